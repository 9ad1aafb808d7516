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
        _wait_healthy(handle, verify)
        yield handle
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                handle.kill()


def _wait_healthy(handle: ClarionProcess, verify: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"clarion exited early:\n{handle.log.read_text()}")
        try:
            if httpx.get(handle.url + "/healthz", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"clarion did not become healthy:\n{handle.log.read_text()}")
