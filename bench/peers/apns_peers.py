"""Run the Node peers (node-apn alone, Parse Server with its push adapter)
against a fake APNs that runs in another process.

    .venv/bin/python bench/peers/apns_peers.py node-apn --n 20000 --mode all
    .venv/bin/python bench/peers/apns_peers.py parse --n 5000

Each prints the peer's JSON result, with what the fake itself counted
(`fake_requests`: requests it answered; `fake_cpu_seconds`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.fakes.process import FakeHandle, fake_in_subprocess  # noqa: E402
from tests.ports import free_port  # noqa: E402

PARSE_DATABASE = "parse_bench"


def ensure_node_modules() -> None:
    """`npm ci` from the lock file when node_modules is missing (the registry is the only network used)."""
    if not (PEERS / "node_modules" / "parse-server").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS, check=True,
                       stdout=subprocess.DEVNULL)


def apns_config(info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What node-apn needs to reach the fake: address, port and the provider-token key."""
    parts = urlsplit(info["url"])
    credentials = info["credentials"]
    return {"address": parts.hostname, "port": parts.port, "key": credentials["private_key"],
            "keyId": credentials["key_id"], "teamId": credentials["team_id"], "topic": credentials["topic"],
            **extra}


def run_node(script: str, config: dict[str, Any], ca_pem_path: str, timeout: float) -> dict[str, Any]:
    """Run a Node script with `config` as a JSON file; its last stdout line as JSON."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(config, file)
    # PARSE_SERVER_LOGS_FOLDER=null: no ./logs files from Parse Server's logger.
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": ca_pem_path, "NODE_ENV": "production",
           "PARSE_SERVER_LOGS_FOLDER": "null"}
    try:
        done = subprocess.run(["node", str(PEERS / script), file.name], cwd=PEERS, env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        os.unlink(file.name)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def with_fake_counts(fake: FakeHandle, result_of: Any) -> dict[str, Any]:
    """The peer's result plus the requests and CPU seconds the fake spent meanwhile."""
    before = fake.call("stats")
    result = dict(result_of())
    after = fake.call("stats")
    result["fake_requests"] = after["requests"] - before["requests"]
    result["fake_cpu_seconds"] = after["cpu_seconds"] - before["cpu_seconds"]
    return result


def node_apn(fake: FakeHandle, n: int, mode: str = "window", inflight: int = 1000,
             request_timeout: int = 5000, max_session_memory: int | None = None) -> dict[str, Any]:
    """@parse/node-apn alone on one connection (`mode` as in node_apn.js)."""
    config = apns_config(fake.info, n=n, mode=mode, inflight=inflight, requestTimeout=request_timeout,
                         maxSessionMemory=max_session_memory)
    return with_fake_counts(fake, lambda: run_node("node_apn.js", config, fake.info["ca_pem_path"], 600))


def ensure_database(name: str = PARSE_DATABASE) -> str:
    """A fresh PostgreSQL database of our own for Parse Server; its URL."""
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"]
    subprocess.run([*psql, f"drop database if exists {name} with (force)"], check=True, capture_output=True)
    subprocess.run([*psql, f"create database {name}"], check=True, capture_output=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def parse_server(fake: FakeHandle, n: int, request_timeout: int | None = None,
                 max_session_memory: int | None = None) -> dict[str, Any]:
    """Parse Server (push adapter → node-apn) broadcasting to `n` iOS installations on PostgreSQL."""
    # The port comes from the OS: a random pick could be taken, or one Node's fetch refuses.
    config = apns_config(fake.info, n=n, databaseURI=ensure_database(), serverPort=free_port(),
                         requestTimeout=request_timeout,
                         maxSessionMemory=max_session_memory)
    return with_fake_counts(fake, lambda: run_node("parse_push.js", config, fake.info["ca_pem_path"], 1200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=["node-apn", "parse"])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--mode", choices=["window", "all"], default="window")
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--request-timeout", type=int, default=None, help="node-apn's requestTimeout, ms")
    parser.add_argument("--max-session-memory", type=int, default=None,
                        help="Node's http2 maxSessionMemory for node-apn's session, MB (Node's default: 10)")
    parser.add_argument("--max-streams", type=int, default=1000, help="the fake's MAX_CONCURRENT_STREAMS")
    args = parser.parse_args()
    ensure_node_modules()
    with fake_in_subprocess("apns", record=False, fast_hpack=True, max_concurrent_streams=args.max_streams) as fake:
        if args.peer == "node-apn":
            result = node_apn(fake, args.n, args.mode, args.inflight, args.request_timeout or 5000,
                              args.max_session_memory)
        else:
            result = parse_server(fake, args.n, args.request_timeout, args.max_session_memory)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
