"""A lean keep-alive HTTP/1.1 client for many small POSTs over TLS (Web Push, FCM).

aiohttp's request machinery cost ~450 µs of CPU per request here, more than
the RFC 8291 encryption. This pool builds each request as one bytes object,
writes it once, and parses the answer with httptools (llhttp, in C) straight
from an `asyncio.Protocol`: no streams, no per-request objects beyond a future.

Connections go to exactly the addresses `resolve` returns while TLS verifies
the URL's host name, so a resolver that refuses private addresses leaves no
window for DNS rebinding between its check and the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httptools  # type: ignore[import-untyped]

MAX_BODY_BYTES = 64 * 1024  # push services answer with a few hundred bytes at most
# Headers and chunk framing on top of the body; bounds what a hostile server can make us hold.
MAX_RESPONSE_BYTES = 2 * MAX_BODY_BYTES
_CLOSE_GRACE_SECONDS = 1.0  # for the TLS close_notify exchange in aclose; then the socket is just dropped
_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]")  # spaces, controls, non-ASCII: would bend the request line


class Http1Error(ConnectionError):
    """Connecting, sending or reading failed; the connection involved is closed."""


class _ClosedBeforeAnswer(Http1Error):
    """The server closed the connection before any byte of the answer: a kept-alive
    connection it had timed out, which is worth one retry on a fresh connection."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps the last value
    body: bytes


class Resolver(Protocol):
    async def __call__(self, host: str, port: int) -> list[str]:
        """The IP addresses to connect to; raises an OSError subclass to refuse the host."""
        ...


async def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, or the host itself when it is an IP literal."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_DEFAULT_PORTS = {"https": 443, "http": 80}
OriginKey = tuple[str, int, bool]  # host, port, TLS


def origin_of(url: urllib.parse.SplitResult) -> tuple[str, int]:
    """(host, port) of an https:// or http:// URL; raises ValueError for any other."""
    host = url.hostname
    if url.scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("only https:// and http:// URLs with a host are supported")
    return host, url.port or _DEFAULT_PORTS[url.scheme]


def encode_request(host: str, port: int, url: urllib.parse.SplitResult, headers: Mapping[str, str],
                   body: bytes) -> bytes:
    """The POST as the bytes to write. `headers` must not set Host or Content-Length.
    Raises ValueError for a URL or header that would bend the request."""
    target = url.path or "/"
    if url.query:
        target = f"{target}?{url.query}"
    if _UNSAFE_TARGET.search(target) or _UNSAFE_TARGET.search(host):
        raise ValueError("the URL has spaces, control or non-ASCII characters")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    authority = host if port == _DEFAULT_PORTS.get(url.scheme) else f"{host}:{port}"
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # Each header adds exactly one CR and one LF; any more would start a header of the caller's choosing.
    if lines.count("\r") != len(headers) or lines.count("\n") != len(headers):
        raise ValueError("a header name or value contains CR or LF")
    head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {len(body)}\r\n{lines}\r\n"
    return head.encode("latin-1") + body  # UnicodeEncodeError is a ValueError


class _Connection(asyncio.Protocol):
    """One TLS connection: sends a request and parses its answer, one at a time."""

    def __init__(self, origin: _Origin, on_made: Callable[[_Connection], None],
                 on_lost: Callable[[_Connection], None]) -> None:
        self.origin = origin
        self.open = False  # False once closing: never written to again
        self.keep_alive = False  # the last answer allows another request
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._on_made, self._on_lost = on_made, on_lost
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._pending: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heard = False  # a byte of the answer to the pending request arrived
        self._received = 0
        self._headers_done = False
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        """Writes `request`; the future is the answer, or fails with Http1Error, or
        with TimeoutError at `deadline` (loop time; the connection is then aborted)."""
        pending = self._pending = self._loop.create_future()
        self._heard, self._received, self.keep_alive = False, 0, False
        if not self.open or self._transport is None:  # lost while being handed over
            pending.set_exception(_ClosedBeforeAnswer("the server closed the connection"))
        else:
            # A timer per request is a third of what asyncio.timeout costs.
            self._timer = self._loop.call_at(deadline, self._time_out)
            self._transport.write(request)
        return pending

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.open = True
        self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        self._received += len(data)
        try:
            if self._pending is None:
                raise Http1Error("the server sent data while no request was pending")
            if self._received > MAX_RESPONSE_BYTES:
                raise Http1Error(f"the answer exceeds {MAX_RESPONSE_BYTES} bytes")
            self._parser.feed_data(data)
        except (Http1Error, httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, Http1Error) else exc  # raised in a callback
            self._fail(Http1Error(f"bad answer from the server: {cause}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        pending = self._settle()
        if pending is not None:
            reason = f": {exc!r}" if exc else ""
            if self._ends_at_close():
                pending.set_result(Response(self._parser.get_status_code(), self._headers, bytes(self._body)))
            elif self._heard:
                pending.set_exception(Http1Error(f"the server closed the connection mid-answer{reason}"))
            else:
                pending.set_exception(_ClosedBeforeAnswer(f"the server closed the connection{reason}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost(self)

    # -- httptools callbacks ---------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            raise Http1Error(f"the body exceeds {MAX_BODY_BYTES} bytes")

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        headers, body = self._headers, bytes(self._body)
        self._headers, self._body, self._headers_done = {}, bytearray(), False
        if status < 200:
            return  # interim (100 Continue, 103 Early Hints): the real answer follows
        if self._pending is None:
            raise Http1Error("an answer to no request")
        self.keep_alive = self._parser.should_keep_alive()  # only meaningful inside this callback
        pending = self._settle()
        if pending is not None:
            pending.set_result(Response(status, headers, body))

    # -- internals -------------------------------------------------------------
    def _ends_at_close(self) -> bool:
        """True when the answer has no length and no chunks: its body is whatever came before EOF."""
        headers = self._headers
        return self._headers_done and "content-length" not in headers and "transfer-encoding" not in headers

    def _settle(self) -> asyncio.Future[Response] | None:
        """The pending request's future, if still waiting for an outcome; stops its timer."""
        pending, self._pending = self._pending, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return pending if pending is not None and not pending.done() else None

    def _time_out(self) -> None:
        self._fail(TimeoutError("no answer within the timeout"))

    def _fail(self, exc: Exception) -> None:
        pending = self._settle()
        if pending is not None:
            pending.set_exception(exc)
        self.abort()


class _Origin:
    """The connections to one host and port: idle ones, a count of all open or
    opening ones (slots), and the requests waiting for one, first come first served."""

    def __init__(self, key: OriginKey, limit: int, idle_seconds: float,
                 on_empty: Callable[[_Origin], None]) -> None:
        self.key = key
        self.slots = 0
        self._limit, self._idle_seconds, self._on_empty = limit, idle_seconds, on_empty
        self._idle: list[_Connection] = []  # the most recently used last
        # A waiter gets a connection to reuse, or None: a slot of its own to open one.
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    def take_idle(self) -> _Connection | None:
        return self._idle.pop() if self._idle else None

    async def acquire(self, fresh: bool) -> _Connection | None:
        """An idle connection (unless `fresh`), or None when the caller now holds a
        slot and must open a connection (or call `free_slot` when that fails)."""
        if self._idle:
            if not fresh:
                return self._idle.pop()
            self._idle.pop(0).close()  # the oldest idle one gives its slot to a fresh one
            return None
        if self.slots < self._limit:
            self.slots += 1
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            # Handed a connection or slot just as we gave up (timeout): pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_on(waiter.result())
            raise

    def release(self, conn: _Connection) -> None:
        """Back after a complete answer: to the first waiter, else idle; closed unless kept alive."""
        if not (conn.open and conn.keep_alive):
            conn.close()
            self.free_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._arm_sweeper()

    def discard(self, conn: _Connection) -> None:
        """Drops a connection that failed mid-request."""
        conn.abort()
        self.free_slot()

    def free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.slots -= 1
        if self.slots == 0:
            self._on_empty(self)

    def connection_lost(self, conn: _Connection) -> None:
        """A busy connection is its request's to discard; an idle one goes here."""
        if conn in self._idle:
            self._idle.remove(conn)
            self.free_slot()

    def shut(self, exc: Http1Error) -> None:
        """Fails the waiters and stops the sweeper (the pool closes the connections)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _pass_on(self, handed: _Connection | None) -> None:
        if handed is None:
            self.free_slot()
        else:
            self.release(handed)

    def _arm_sweeper(self) -> None:
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_at(
                self._idle[0].idle_since + self._idle_seconds, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = asyncio.get_running_loop().time() - self._idle_seconds
        while self._idle and self._idle[0].idle_since <= cutoff:
            self._idle.pop(0).close()
            self.free_slot()
        self._arm_sweeper()


class Http1Pool:
    """Keep-alive HTTP/1.1 connections (TLS for https://), at most `max_per_origin` per
    host and port, one request at a time on each (no pipelining)."""

    def __init__(self, *, ssl_context: ssl.SSLContext, resolve: Resolver, max_per_origin: int = 20,
                 timeout: float = 30.0, idle_seconds: float = 60.0) -> None:
        if max_per_origin < 1:
            raise ValueError("max_per_origin must be at least 1")
        self._ssl, self._resolve = ssl_context, resolve
        self._limit, self._timeout, self._idle_seconds = max_per_origin, timeout, idle_seconds
        self._origins: dict[OriginKey, _Origin] = {}
        self._live: set[_Connection] = set()  # transports not yet closed, for aclose to wait on
        self._closed = False

    async def post(self, url: urllib.parse.SplitResult, headers: Mapping[str, str], body: bytes) -> Response:
        """POSTs `body` to `url` and returns the answer, whatever its status.

        Raises ValueError for a URL or header that would bend the request;
        whatever `resolve` raises, unchanged (e.g. the caller's refusal of a
        private address); Http1Error (a ConnectionError) when connecting,
        TLS, writing or reading fails or after `aclose`; TimeoutError when the
        whole exchange, waiting for a connection included, takes longer than `timeout`.
        """
        host, port = origin_of(url)
        request = encode_request(host, port, url, headers, body)
        key = (host, port, url.scheme == "https")
        return await self._exchange(key, request, asyncio.get_running_loop().time() + self._timeout)

    async def aclose(self) -> None:
        """Closes every connection and waits until their transports are closed."""
        self._closed = True
        for origin in self._origins.values():
            origin.shut(Http1Error("the HTTP/1.1 pool is closed"))
        self._origins.clear()
        live = list(self._live)
        for conn in live:
            conn.close()
        if live:
            await asyncio.wait([conn.closed for conn in live], timeout=_CLOSE_GRACE_SECONDS)
            for conn in live:
                if not conn.closed.done():
                    conn.abort()  # a peer that never answered our close_notify
            await asyncio.wait([conn.closed for conn in live])

    # -- internals -------------------------------------------------------------
    async def _exchange(self, key: OriginKey, request: bytes, deadline: float) -> Response:
        fresh = False
        while True:
            origin = self._origin(key)
            conn = None if fresh else origin.take_idle()
            reused = conn is not None
            if conn is None:  # the slow path: wait for a connection or open one
                async with asyncio.timeout_at(deadline):
                    conn, reused = await self._connection(origin, fresh)
            try:
                response = await conn.send(request, deadline)
            except _ClosedBeforeAnswer:
                origin.discard(conn)
                if reused and not fresh:
                    fresh = True  # servers close idle keep-alive connections: retry once
                    continue
                raise
            except BaseException:
                origin.discard(conn)
                raise
            origin.release(conn)
            return response

    async def _connection(self, origin: _Origin, fresh: bool) -> tuple[_Connection, bool]:
        """A connection, and whether it is a reused one."""
        conn = await origin.acquire(fresh)
        if conn is not None:
            return conn, True
        try:
            return await self._open(origin), False
        except BaseException:
            origin.free_slot()
            raise

    def _origin(self, key: OriginKey) -> _Origin:
        if self._closed:
            raise Http1Error("the HTTP/1.1 pool is closed")
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(key, self._limit, self._idle_seconds, self._forget)
        return origin

    def _forget(self, origin: _Origin) -> None:
        # Endpoint hosts are chosen by whoever subscribes: keep no state for hosts we no longer talk to.
        if self._origins.get(origin.key) is origin:
            del self._origins[origin.key]

    async def _open(self, origin: _Origin) -> _Connection:
        host, port, tls = origin.key
        addresses = await self._resolve(host, port)
        if not addresses:
            raise Http1Error(f"{host} resolved to no address")
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in addresses:
            try:
                transport, conn = await loop.create_connection(
                    lambda: _Connection(origin, self._live.add, self._connection_lost),
                    host=address, port=port, ssl=self._ssl if tls else None, server_hostname=host if tls else None)
            except OSError as exc:  # refused, unreachable, TLS or certificate failure: try the next
                error = exc
                continue
            tls_object = transport.get_extra_info("ssl_object")
            protocol = tls_object.selected_alpn_protocol() if tls_object else None
            if self._closed or protocol not in (None, "http/1.1"):
                conn.abort()
                raise Http1Error("the HTTP/1.1 pool is closed" if self._closed else f"the server chose {protocol}")
            return conn
        raise Http1Error(f"cannot connect to {host}:{port}: {error!r}") from error

    def _connection_lost(self, conn: _Connection) -> None:
        self._live.discard(conn)
        conn.origin.connection_lost(conn)
