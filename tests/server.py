"""Run a real `clarion` process on loopback for tests that need one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.ports import free_port


@dataclass
class ClarionProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crash would be."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def clarion_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CLARION_DATA_DIR": str(data_dir), "CLARION_PORT": str(port),
           "CLARION_ADMIN_TOKEN": ADMIN_TOKEN, "CLARION_SECRET_KEY": SECRET_KEY}
    env.update(extra)
    return {name: value for name, value in env.items() if value != ""}  # "" unsets a variable


@contextmanager
def running_clarion(
    command: str, data_dir: Path, *, scheme: str = "http", verify: Any = True, **env: str
) -> Iterator[ClarionProcess]:
    """Start `clarion <command>`, wait until /healthz answers, stop it after."""
    port = free_port()
    log = data_dir / f"clarion-{command}-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clarion", command], env=clarion_env(data_dir, port, **env),
            stdout=out, stderr=subprocess.STDOUT,
        )
    handle = ClarionProcess(f"{scheme}://127.0.0.1:{port}", process, log)
    try:
        wait_healthy(handle.url, process, log, verify=verify)
        yield handle
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                handle.kill()


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, verify: Any = True,
                 timeout: float = 60, name: str = "clarion") -> None:
    """Until `url`/healthz answers 200; RuntimeError with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not become healthy:\n{log.read_text()[-3000:]}")
