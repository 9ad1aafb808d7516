"""Section 6: the HTTP API under load — `POST /v1/devices` and a single-user
`POST /v1/notifications`, driven by wrk at a fixed concurrency.

    .venv/bin/python bench/api_load.py [--seconds 10] [--connections 32] [--command api|serve]

Starts `clarion api` (or `serve`) on loopback with a fresh SQLite data dir and
rate limits off (CLARION_RATE_LIMIT_*=0), creates an app, then lets wrk (one
thread, so the load generator takes one core at most) post distinct bodies
from a Lua script: a new user and iOS token per device request, one user's
notification with a distinct body per notification request.
Prints one JSON object: {"devices": {...}, "notifications": {...}} with
requests/s, p50/p99 latency (ms), and non-2xx counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import httpx  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.server import wait_healthy  # noqa: E402

ADMIN_TOKEN = "adm_bench-admin-token"
SECRET_KEY = "11" * 32

# Each wrk connection numbers its own requests; `prefix` keeps runs and threads apart.
DEVICES_LUA = """
local counter = 0
math.randomseed(os.time() + os.clock() * 1e6)
local salt = math.random(0, 0x7fffffff)
local prefix = string.format("%%x", salt)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  counter = counter + 1
  local token = string.format("%%08x%%056x", salt, counter)
  local body = '{"user_id":"load-' .. prefix .. '-' .. counter .. '","platform":"ios","token":"' .. token .. '"}'
  return wrk.format(nil, "/v1/devices", nil, body)
end
"""

NOTIFICATIONS_LUA = """
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  counter = counter + 1
  local body = '{"type":"transactional","audience":{"user_ids":["%(user)s"]},'
    .. '"content":{"title":"Order shipped","body":"Your order ' .. counter .. ' is on its way"}}'
  return wrk.format(nil, "/v1/notifications", nil, body)
end
"""

# wrk calls done() once with the merged statistics; we print them as JSON.
DONE_LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%d,"seconds":%.6f,"non_2xx":%d,"socket_errors":%d,'
    .. '"p50_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f}\\n',
    summary.requests, summary.duration / 1e6, errors.status, errors.connect + errors.read + errors.write
    + errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


@dataclass
class Clarion:
    url: str
    process: subprocess.Popen[bytes]
    log: Path



def clarion_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked Clarion process: loopback, temp data dir, limits off."""
    env = {**os.environ, "CLARION_DATA_DIR": str(data_dir), "CLARION_PORT": str(port),
           "CLARION_ADMIN_TOKEN": ADMIN_TOKEN, "CLARION_SECRET_KEY": SECRET_KEY, "CLARION_LOG_LEVEL": "WARNING",
           "CLARION_RATE_LIMIT_NOTIFICATIONS": "0", "CLARION_RATE_LIMIT_DEVICES": "0"}
    env.update(extra)
    return env


@contextmanager
def running_clarion(command: str, data_dir: Path, **extra: str) -> Iterator[Clarion]:
    """`clarion <command>` on a free loopback port until /healthz answers; terminated after."""
    port = free_port()
    log = data_dir / f"clarion-{command}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "clarion", command],
                                   env=clarion_env(data_dir, port, **extra), stdout=out, stderr=subprocess.STDOUT)
    clarion = Clarion(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_healthy(clarion.url, process, log)
        yield clarion
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def create_app(url: str, name: str = "bench") -> dict[str, Any]:
    """POST /v1/apps with the admin token; the new app with its secret key."""
    answer = httpx.post(url + "/v1/apps", json={"name": name},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def run_wrk(url: str, script: str, seconds: float, connections: int) -> dict[str, float]:
    """wrk with one thread and `connections` connections; its done() statistics plus requests/s."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script + DONE_LUA)
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                   "-s", lua.name, url]
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(lua.name)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[len("RESULT "):])
    result["requests_per_second"] = result["requests"] / result["seconds"]
    result["connections"] = connections
    return result


def measure(seconds: float, connections: int, command: str = "api") -> dict[str, Any]:
    """Both endpoints against one fresh Clarion; raises if wrk is missing or requests fail."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="clarion-api-load-") as tmp, running_clarion(command, Path(tmp)) as clarion:
        key = create_app(clarion.url)["secret_key"]
        headers = {"Authorization": f"Bearer {key}"}
        answer = httpx.post(clarion.url + "/v1/devices", headers=headers, timeout=30,
                            json={"user_id": "load-target", "platform": "ios", "token": "ab" * 32})
        answer.raise_for_status()
        results = {"command": command,
                   "devices": run_wrk(clarion.url, DEVICES_LUA % {"key": key}, seconds, connections),
                   "notifications": run_wrk(clarion.url, NOTIFICATIONS_LUA % {"key": key, "user": "load-target"},
                                            seconds, connections)}
    for name in ("devices", "notifications"):
        if results[name]["requests"] == 0 or results[name]["non_2xx"] > 0:
            raise RuntimeError(f"API load on {name}: {results[name]}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="The HTTP API under wrk at a fixed concurrency.")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--command", choices=["api", "serve"], default="api")
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds, args.connections, args.command)))


if __name__ == "__main__":
    main()
