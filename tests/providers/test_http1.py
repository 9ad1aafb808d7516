"""Http1Pool against real TLS servers on 127.0.0.1: aiohttp for well-behaved
answers, a hand-written asyncio server for the misbehaving ones.

The servers' certificates name only `push.example`, which the test resolver
maps to 127.0.0.1: every success shows the name, not the IP, was verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

import psutil
import pytest
from aiohttp import web

from clarion.providers.http1 import MAX_BODY_BYTES, Http1Error, Http1Pool, encode_request, origin_of
from clarion.providers.tls import client_ssl_context
from clarion.providers.webpush import EndpointRefused
from tests.fakes.tls import ca_pem_path
from tests.fakes.tls import test_ca as fake_ca

NAME = "push.example"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@lru_cache
def server_context(name: str = NAME) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    fake_ca().issue_cert(name).configure_cert(context)
    return context


async def to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def url(port: int, target: str = "/push/abc") -> SplitResult:
    return urlsplit(f"https://{NAME}:{port}{target}")


class AppServer:
    """An aiohttp app over TLS that records the client port (one per connection) of each request."""

    def __init__(self, handler: Handler, context: ssl.SSLContext, **runner_options: Any) -> None:
        self.peers: list[int] = []
        self._handler, self._context, self._options = handler, context, runner_options
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None, **self._options)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        return await self._handler(request)


@dataclass(frozen=True)
class Reply:
    data: bytes = b""
    close: bool = False  # hang up after sending `data`
    hang: bool = False  # say nothing more, until the client hangs up


OK = Reply(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
CLOSE = Reply(close=True)
HANG = Reply(hang=True)


class RawServer:
    """HTTP/1.1 by hand over TLS: `script(connection, request)` (both counted from 0) says how to answer."""

    def __init__(self, script: Callable[[int, int], Reply]) -> None:
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.all_closed = asyncio.Event()
        self.port = 0
        self._script = script
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=server_context())
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        number, self.connections, self.open = self.connections, self.connections + 1, self.open + 1
        self.all_closed.clear()
        try:
            await self._answer(number, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client hung up
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
                await writer.wait_closed()
            self.open -= 1
            if self.open == 0:
                self.all_closed.set()

    async def _answer(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: (\d+)\r\n", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            self.requests += 1
            reply = self._script(number, request)
            writer.write(reply.data)
            await writer.drain()
            if reply.close:
                return
            if reply.hang:
                await reader.read()  # until the client hangs up
                return
            request += 1


def client_sockets_to(port: int) -> list[Any]:
    """This process's sockets connected to `port`: the client ends of connections to a server."""
    return [conn for conn in psutil.Process().net_connections() if conn.raddr and conn.raddr.port == port]


async def eventually(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    """Polls `condition` (socket states, which nothing signals) until it holds."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold in time")


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., Http1Pool]]:
    """Makes pools trusting the test CA and resolving every name to 127.0.0.1; closes them after."""
    made: list[Http1Pool] = []

    def make(**options: Any) -> Http1Pool:
        options.setdefault("resolve", to_loopback)
        pool = Http1Pool(ssl_context=client_ssl_context(ca_pem_path()), **options)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.aclose()


@pytest.fixture
async def app_server() -> AsyncIterator[Callable[..., Awaitable[AppServer]]]:
    """Starts aiohttp servers answering every POST with `handler`; stops them after."""
    started: list[AppServer] = []

    async def start(handler: Handler, context: ssl.SSLContext | None = None, **options: Any) -> AppServer:
        server = AppServer(handler, context or server_context(), **options)
        started.append(server)
        await server.start()
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Callable[[int, int], Reply]], Awaitable[RawServer]]]:
    """Starts hand-written servers following a script; stops them after."""
    started: list[RawServer] = []

    async def start(script: Callable[[int, int], Reply]) -> RawServer:
        server = RawServer(script)
        started.append(server)
        await server.start()
        return server

    yield start
    for server in started:
        await server.stop()


async def created(request: web.Request) -> web.Response:
    return web.Response(status=201, body=b"created", headers={"Location": "/m/1", "Retry-After": "7"})


async def echo(request: web.Request) -> web.Response:
    await asyncio.sleep(0.005)  # long enough for requests to pile up
    return web.Response(body=await request.read())


@pytest.mark.parametrize(("target", "expected"), [
    ("https://push.example/w/1?k=v", b"POST /w/1?k=v HTTP/1.1\r\nHost: push.example\r\n"),
    ("https://Push.Example:8443", b"POST / HTTP/1.1\r\nHost: push.example:8443\r\n"),
    ("https://[2001:db8::1]:8443/w", b"POST /w HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n"),
])
def test_request_bytes(target: str, expected: bytes) -> None:
    """Request line and Host (port only when not 443), then length, the caller's headers, the body."""
    split = urlsplit(target)
    request = encode_request(*origin_of(split), split, {"TTL": "60", "Topic": "t"}, b"body")
    assert request == expected + b"Content-Length: 4\r\nTTL: 60\r\nTopic: t\r\n\r\nbody"


# -- answers -------------------------------------------------------------------------
async def test_created_with_body_and_headers(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """The request arrives as sent; the 201's body and headers come back, names lower-cased."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        return await created(request)

    server = await app_server(record)
    response = await pools().post(url(server.port, "/push/abc?x=1"), {"TTL": "60", "Urgency": "high"}, b"\x00body!")
    assert (response.status, response.body) == (201, b"created")
    assert response.headers["location"] == "/m/1" and response.headers["retry-after"] == "7"
    [(method, target, headers, body)] = seen
    assert (method, target, body) == ("POST", "/push/abc?x=1", b"\x00body!")
    assert headers["Host"] == f"{NAME}:{server.port}" and headers["Content-Length"] == "6"
    assert headers["TTL"] == "60" and headers["Urgency"] == "high"


async def test_chunked_body(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """A chunked answer comes back whole."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"abc", b"def", b"g" * 5000):
            await response.write(part)
        await response.write_eof()
        return response

    server = await app_server(chunked)
    response = await pools().post(url(server.port), {}, b"")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"abcdef" + b"g" * 5000


async def test_body_until_close_and_interim_answers(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """A body without length ends at EOF; 100 Continue and 103 Early Hints are skipped."""
    replies = [
        Reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", close=True),
        Reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
              b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"),
    ]
    server = await raw_server(lambda connection, request: replies[connection])
    pool = pools()
    first = await pool.post(url(server.port), {}, b"")
    second = await pool.post(url(server.port), {}, b"")
    assert (first.status, first.body) == (200, b"until the end")
    assert (second.status, second.body, second.headers) == (202, b"ok", {"content-length": "2"})


@pytest.mark.parametrize(("size", "fits"), [(MAX_BODY_BYTES, True), (MAX_BODY_BYTES + 1, False)])
async def test_body_cap(pools: Callable[..., Http1Pool], raw_server: Any, size: int, fits: bool) -> None:
    """Bodies up to 64 KiB are read; a bigger one is a protocol error."""
    reply = Reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    server = await raw_server(lambda connection, request: reply)
    if fits:
        assert len((await pools().post(url(server.port), {}, b"")).body) == size
    else:
        with pytest.raises(Http1Error, match="exceeds"):
            await pools().post(url(server.port), {}, b"")


# -- connection reuse ------------------------------------------------------------------
async def test_concurrent_posts_share_at_most_max_per_origin(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """60 concurrent posts go over exactly 4 connections, and each gets its own answer."""
    server = await app_server(echo)
    pool = pools(max_per_origin=4)
    bodies = [f"request {i}".encode() for i in range(60)]
    responses = await asyncio.gather(*(pool.post(url(server.port), {}, body) for body in bodies))
    assert [response.body for response in responses] == bodies
    assert len(set(server.peers)) == 4


async def test_waiters_are_served_first_come_first_served(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """With one connection, requests reach the server in the order they were made."""
    server = await app_server(echo)
    pool = pools(max_per_origin=1)
    bodies = [str(i).encode() for i in range(10)]
    arrivals = []

    async def post(body: bytes) -> None:
        arrivals.append((await pool.post(url(server.port), {}, body)).body)

    await asyncio.gather(*(post(body) for body in bodies))
    assert arrivals == bodies and len(set(server.peers)) == 1


async def test_connection_close_answers_are_not_reused(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """After `Connection: close` every post opens a new connection, even if the server leaves it open."""
    closing = Reply(b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    reused = Reply(b"HTTP/1.1 500 Reused\r\nContent-Length: 0\r\n\r\n")
    server = await raw_server(lambda connection, request: closing if request == 0 else reused)
    pool = pools()
    assert [(await pool.post(url(server.port), {}, b"")).status for _ in range(3)] == [201, 201, 201]
    assert server.connections == 3


async def test_server_closing_idle_connections(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """A server that drops idle keep-alive connections: the next post opens a new one and succeeds."""
    server = await app_server(created, keepalive_timeout=0.05)
    pool = pools()
    assert (await pool.post(url(server.port), {}, b"")).status == 201
    await eventually(lambda: client_sockets_to(server.port) == [])  # the client saw the server hang up
    assert (await pool.post(url(server.port), {}, b"")).status == 201
    assert len(set(server.peers)) == 2


async def test_reused_connection_closed_before_answer_is_retried(pools: Callable[..., Http1Pool],
                                                                 raw_server: Any) -> None:
    """A kept-alive connection the server closes instead of answering: retried once, on a fresh connection."""
    server = await raw_server(lambda connection, request: CLOSE if (connection, request) == (0, 1) else OK)
    pool = pools()
    assert (await pool.post(url(server.port), {}, b"")).status == 201
    assert (await pool.post(url(server.port), {}, b"")).status == 201
    assert server.connections == 2


async def test_fresh_connection_closed_before_answer_fails(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """A fresh connection closed without an answer is an Http1Error, without a retry."""
    server = await raw_server(lambda connection, request: CLOSE)
    with pytest.raises(Http1Error):
        await pools().post(url(server.port), {}, b"")
    assert server.connections == 1


async def test_answer_cut_short_fails(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """EOF in the middle of a body is an Http1Error, not a short body."""
    server = await raw_server(lambda connection, request: Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                                                                close=True))
    with pytest.raises(Http1Error, match="mid-answer"):
        await pools().post(url(server.port), {}, b"")


async def test_idle_connections_are_closed(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """A connection unused for `idle_seconds` is closed; the next post opens another."""
    server = await raw_server(lambda connection, request: OK)
    pool = pools(idle_seconds=0.1)
    await pool.post(url(server.port), {}, b"")
    await asyncio.wait_for(server.all_closed.wait(), 2)
    await pool.post(url(server.port), {}, b"")
    assert server.connections == 2


# -- failures --------------------------------------------------------------------------
async def test_silent_server_times_out(pools: Callable[..., Http1Pool], raw_server: Any) -> None:
    """No answer within `timeout` is a TimeoutError, and the connection is closed."""
    server = await raw_server(lambda connection, request: HANG)
    with pytest.raises(TimeoutError):
        await pools(timeout=0.2).post(url(server.port), {}, b"")
    await asyncio.wait_for(server.all_closed.wait(), 2)


async def test_stalled_tls_handshake_times_out(pools: Callable[..., Http1Pool]) -> None:
    """A server that accepts TCP but never speaks TLS: the timeout covers connecting, and the socket is closed."""
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        writer.close()
        hung_up.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        with pytest.raises(TimeoutError):
            await pools(timeout=0.2).post(url(server.sockets[0].getsockname()[1]), {}, b"")
        await asyncio.wait_for(hung_up.wait(), 2)


@pytest.mark.parametrize("headers", [{"X-A": "v\r\nX-Injected: 1"}, {"X-A\n": "v"}, {"X-A": "a\rb"}],
                         ids=["crlf-value", "lf-name", "cr-value"])
async def test_header_injection_is_refused(pools: Callable[..., Http1Pool], headers: dict[str, str]) -> None:
    """CR or LF in a header is a ValueError before anything is resolved or sent."""
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    with pytest.raises(ValueError, match="CR or LF"):
        await pools(resolve=resolve).post(url(443), headers, b"")
    assert resolved == []


@pytest.mark.parametrize("target", ["https://push.example/a b", "ftp://push.example/", "https://push.example/\x7f"])
async def test_bad_urls_are_refused(pools: Callable[..., Http1Pool], target: str) -> None:
    """Schemes other than https/http and request targets with spaces or control characters are ValueErrors."""
    with pytest.raises(ValueError):
        await pools().post(urlsplit(target), {}, b"")


async def test_certificate_for_another_name_fails(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """A certificate that does not name the URL's host is refused, although the IP is the right one."""
    server = await app_server(created, context=server_context("other.example"))
    with pytest.raises(Http1Error) as caught:
        await pools().post(url(server.port), {}, b"")
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_resolver_refusal_propagates(pools: Callable[..., Http1Pool]) -> None:
    """What the resolver raises reaches the caller unchanged."""

    async def refuse(host: str, port: int) -> list[str]:
        raise EndpointRefused(f"{host} resolves to a private address")

    with pytest.raises(EndpointRefused, match="private address"):
        await pools(resolve=refuse).post(url(443), {}, b"")


async def test_next_address_after_a_failed_one(pools: Callable[..., Http1Pool], app_server: Any) -> None:
    """An address that refuses the connection is skipped; when all do, Http1Error."""
    server = await app_server(created)

    async def dead_first(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]  # the server listens on 127.0.0.1 only

    async def dead_only(host: str, port: int) -> list[str]:
        return ["127.0.0.2"]

    assert (await pools(resolve=dead_first).post(url(server.port), {}, b"")).status == 201
    with pytest.raises(Http1Error, match="cannot connect"):
        await pools(resolve=dead_only).post(url(server.port), {}, b"")


async def test_aclose_closes_everything(raw_server: Any) -> None:
    """aclose closes idle and busy connections (their posts fail), leaves no transport
    to warn about, and later posts raise Http1Error."""
    server = await raw_server(lambda connection, request: OK if (connection, request) == (0, 0) else HANG)
    pool = Http1Pool(ssl_context=client_ssl_context(ca_pem_path()), resolve=to_loopback)
    await pool.post(url(server.port), {}, b"")  # connection 0, now idle
    busy = [asyncio.ensure_future(pool.post(url(server.port), {}, b"")) for _ in range(2)]
    await eventually(lambda: server.requests == 3)  # one on connection 0 again, one on a new connection 1
    assert server.connections == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await pool.aclose()
        assert client_sockets_to(server.port) == []
        for outcome in await asyncio.gather(*busy, return_exceptions=True):
            assert isinstance(outcome, Http1Error)
        with pytest.raises(Http1Error, match="closed"):
            await pool.post(url(server.port), {}, b"")
        del pool, busy
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    await asyncio.wait_for(server.all_closed.wait(), 2)
