"""Run a fake in its own process, so a benchmark does not count the fake's CPU.

    with fake_in_subprocess("apns", record=False) as fake:
        fake.info["url"], fake.info["ca_pem_path"], fake.info["credentials"]
        fake.call("stats")            # {"requests": ..., "cpu_seconds": ...}
        fake.call("subscribe", 100)   # web push only: [(endpoint, p256dh, auth), ...]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any


class FakeHandle:
    def __init__(self, conn: Connection, info: dict[str, Any]) -> None:
        self._conn, self.info = conn, info

    def call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        return self._conn.recv()


@contextmanager
def fake_in_subprocess(kind: str, **options: Any) -> Iterator[FakeHandle]:
    """Start FakeAPNs / FakeFCM / FakeWebPush ("apns", "fcm", "webpush") in a child process."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(kind, options, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError(f"fake {kind} did not start")
        yield FakeHandle(parent, parent.recv())
    finally:
        parent.send(("stop", ()))
        process.join(10)
        if process.is_alive():
            process.kill()


def _serve(kind: str, options: dict[str, Any], conn: Connection) -> None:
    try:
        import uvloop  # the fake must not be the bottleneck
        uvloop.run(_main(kind, options, conn))
    except ImportError:
        asyncio.run(_main(kind, options, conn))


async def _main(kind: str, options: dict[str, Any], conn: Connection) -> None:
    from tests.fakes import FakeAPNs, FakeFCM, FakeWebPush

    fake: Any = {"apns": FakeAPNs, "fcm": FakeFCM, "webpush": FakeWebPush}[kind](**options)
    loop = asyncio.get_running_loop()
    async with fake:
        conn.send(_info(kind, fake))
        while True:
            command, args = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                return
            conn.send(_command(fake, command, args))


def _info(kind: str, fake: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"ca_pem_path": str(fake.ca_pem_path)}
    if kind == "apns":
        info.update(url=fake.url, credentials=fake.credentials())
    elif kind == "fcm":
        info.update(url=fake.url, service_account=fake.service_account())
    else:
        info.update(origin=fake.origin)
    return info


def _command(fake: Any, command: str, args: tuple[Any, ...]) -> Any:
    if command == "stats":
        return {"requests": fake.requests, "cpu_seconds": time.process_time(),
                "jwts": len(getattr(fake, "jwts", getattr(fake, "vapid_jwts", ())))}
    if command == "subscribe":
        return [(endpoint, keys.p256dh, keys.auth) for endpoint, keys in (fake.subscribe() for _ in range(args[0]))]
    raise ValueError(f"unknown command {command!r}")
