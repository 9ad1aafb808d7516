"""A few long-lived HTTP/2 connections to one origin.

Requests go on the first connection with a free stream (up to the server's
MAX_CONCURRENT_STREAMS); another connection opens only when every open one is
saturated, up to `max_connections`. A dropped or GOAWAY'd connection is
replaced on demand, after an exponential backoff with jitter when
connections keep failing.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import deque

from clarion.providers.http2 import ConnectionLost, H2ClientProtocol


class PoolBackingOff(ConnectionLost):
    """Connecting failed recently; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class H2Pool:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_max: float = 30.0,
        cacheable_headers: frozenset[bytes] = frozenset(),
    ) -> None:
        self._host, self._port, self._ssl = host, port, ssl_context
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._backoff = (backoff_base, backoff_max)
        self._cacheable = cacheable_headers
        self._conns: list[H2ClientProtocol] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._connecting: asyncio.Task[None] | None = None
        self._failures = 0
        self._not_before = 0.0
        self.connections_opened = 0

    def available(self) -> H2ClientProtocol | None:
        """A connection with a free stream, without waiting; None if there is none."""
        for conn in self._conns:
            if conn.has_capacity():
                return conn
        return None

    async def acquire(self, wait_seconds: float) -> H2ClientProtocol:
        """A connection with a free stream, opening one if allowed.
        Raises ConnectionLost (PoolBackingOff while connecting keeps failing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            conn = self.available()
            if conn is not None:
                return conn
            self._prune()
            if self._connecting is not None or len(self._conns) < self._max:
                await self._shared_connect()
                continue
            await self._wait_for_slot(deadline - loop.time())

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._wake()

    # -- internals -------------------------------------------------------------
    async def _wait_for_slot(self, remaining: float) -> None:
        if remaining <= 0:
            raise ConnectionLost("no free HTTP/2 stream in time")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError as exc:
            raise ConnectionLost("no free HTTP/2 stream in time") from exc

    def _wake(self) -> None:
        # Every finished stream calls this: keep the common case (no waiter) cheap.
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _prune(self) -> None:
        """Drop connections that are closed or drained after GOAWAY."""
        alive = []
        for conn in self._conns:
            if conn.accepting:
                alive.append(conn)
            elif conn.in_flight == 0:
                # One that served requests before it went restarts the count.
                self._failures = 1 if conn.answered else self._failures + 1
                self._not_before = asyncio.get_running_loop().time() + self._delay()
        self._conns = alive

    async def _shared_connect(self) -> None:
        # One connection attempt at a time; everyone who needs it waits on it.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task[None]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here; each waiter re-raises it

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._not_before - loop.time()
        if wait > 1.0:
            raise PoolBackingOff(f"{self._host}:{self._port} unreachable, backing off", wait)
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            conn = await asyncio.wait_for(self._open(), self._connect_timeout)
        except (OSError, TimeoutError, ConnectionLost, ssl.SSLError) as exc:
            self._failures += 1
            self._not_before = loop.time() + self._delay()
            raise ConnectionLost(f"cannot connect to {self._host}:{self._port}: {exc!r}") from exc
        self._failures = 0
        self.connections_opened += 1
        self._conns.append(conn)

    async def _open(self) -> H2ClientProtocol:
        loop = asyncio.get_running_loop()
        transport, conn = await loop.create_connection(
            lambda: H2ClientProtocol(self._wake, self._cacheable), self._host, self._port,
            ssl=self._ssl, server_hostname=self._host,
        )
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            transport.close()
            raise ConnectionLost("the server did not negotiate HTTP/2 (ALPN h2)")
        try:
            await conn.ready
        except ConnectionLost:
            transport.close()
            raise
        return conn

    def _delay(self) -> float:
        if self._failures == 0:
            return 0.0
        base, cap = self._backoff
        return min(cap, base * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)
