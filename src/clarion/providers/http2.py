"""A lean HTTP/2 client connection on the h2 library, for APNs.

DESIGN.md ("Throughput facts") measured where h2's time goes with thousands
of requests per second on one connection: HPACK encoding and per-stream
bookkeeping, not TLS. So this module

- turns off h2's header validation and normalisation (we build the headers);
- encodes headers itself without the dynamic table or Huffman, so the bytes
  of a header that repeats (authorization, topic, priority...) are computed
  once and reused;
- counts open streams in O(1) (h2 re-scans every stream on each request);
- coalesces the writes of one event-loop turn into one `transport.write`.

It knows nothing of APNs: requests are header lists and a body; answers are
`(status, headers, body)`. Faults surface as `ConnectionLost` or
`StreamRefused`, never as h2 exceptions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

Header = tuple[bytes, bytes]
Response = tuple[int, list[Header], bytes]

_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)
_WINDOW = 1 << 24  # responses are small; a big window saves WINDOW_UPDATE traffic
_SENSITIVE = frozenset({b"authorization"})
_CACHE_LIMIT = 4096


class ConnectionLost(Exception):
    """The connection failed or closed; the request may or may not have been processed."""


class StreamRefused(ConnectionLost):
    """The server refused the stream (GOAWAY past it): it was not processed, resend it."""


def _static_indexes() -> tuple[dict[Header, int], dict[bytes, int]]:
    full: dict[Header, int] = {}
    names: dict[bytes, int] = {}
    for index, (name, value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
        full.setdefault((name, value), index)
        names.setdefault(name, index)
    return full, names


_STATIC_FULL, _STATIC_NAMES = _static_indexes()


def _string(value: bytes) -> bytes:
    length = len(value)
    if length < 127:
        return bytes((length,)) + value  # H=0: no Huffman, cheap both ways
    return bytes(encode_integer(length, 7)) + value


def encode_header(name: bytes, value: bytes) -> bytes:
    """One header as HPACK that never touches the dynamic table (RFC 7541 §6.1, §6.2.2-3)."""
    full = _STATIC_FULL.get((name, value))
    if full is not None:
        return bytes([0x80 | full])  # the static table has 61 entries: one byte
    flag = 0x10 if name in _SENSITIVE else 0x00  # never-indexed for secrets
    index = _STATIC_NAMES.get(name)
    if index is None:
        return bytes([flag]) + _string(name) + _string(value)
    prefix = encode_integer(index, 4)
    prefix[0] |= flag
    return bytes(prefix) + _string(value)


PREENCODED = b":hpack-block"  # a header list [(PREENCODED, block)] carries an already-encoded block


class LiteralEncoder:
    """Stands in for hpack's Encoder inside h2: no dynamic table, so encoding is
    a pure function of each header and repeated headers come from a cache."""

    def __init__(self, cacheable: frozenset[bytes]) -> None:
        self._cacheable = cacheable  # names whose values repeat; others vary per request
        self._cache: dict[Header, bytes] = {}
        # Announce a dynamic table of size 0 once: our table never grows, and
        # this keeps us within any SETTINGS_HEADER_TABLE_SIZE the peer sets.
        self._preamble = b"\x20"
        self.header_table_size = 4096  # h2 assigns this on SETTINGS; unused

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        if headers[0][0] == PREENCODED:  # see encode_header: the caller did the work
            block, self._preamble = self._preamble + headers[0][1], b""
            return block
        cache = self._cache
        parts = [self._preamble]
        self._preamble = b""
        for header in headers:
            block = cache.get(header)
            if block is None:
                block = encode_header(header[0], header[1])
                if header[0] in self._cacheable:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()  # stale values (old tokens) go; the live ones return
                    cache[header] = block
            parts.append(block)
        return b"".join(parts)


class _LeanConnection(h2.connection.H2Connection):
    """h2's connection with O(1) open-stream counting: `_ClientProtocol`
    removes each stream from `streams` as soon as it ends."""

    @property
    def open_outbound_streams(self) -> int:
        return len(self.streams)

    def forget_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if not stream.closed:  # the server answered before we finished sending
            try:
                self.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass  # the connection is closing (GOAWAY): nothing to reset
        del self.streams[stream_id]
        # Remembered so late frames for it (WINDOW_UPDATE, RST) are ignored.
        self._closed_streams[stream_id] = stream.closed_by


class _Pending:
    __slots__ = ("body", "future", "headers", "status")

    def __init__(self, future: asyncio.Future[Response]) -> None:
        self.future = future
        self.status = 0
        self.headers: list[Header] = []
        self.body = b""


class H2ClientProtocol(asyncio.Protocol):
    """One HTTP/2 connection. `request()` is synchronous and returns a future,
    so a caller can put a thousand requests in flight without a task each."""

    def __init__(self, on_slot_free: Any = None, cacheable_headers: frozenset[bytes] = frozenset()) -> None:
        self._loop = asyncio.get_running_loop()
        self.conn = _LeanConnection(config=_CONFIG)
        self.conn.encoder = LiteralEncoder(cacheable_headers)  # type: ignore[assignment]
        self._pending: dict[int, _Pending] = {}
        self._blocked: deque[tuple[int, bytes]] = deque()  # bodies waiting for flow-control window
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._on_slot_free = on_slot_free
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.accepting = False  # False once GOAWAY arrives or the connection drops
        self.max_streams = 1
        self.answered = 0  # responses received; the pool's backoff looks at it

    # -- what callers use ------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def has_capacity(self) -> bool:
        return self.accepting and len(self._pending) < self.max_streams

    def request(self, headers: list[Header], body: bytes) -> tuple[int, asyncio.Future[Response]]:
        """Start one request: (stream id, future of (status, headers, body)). `headers`
        may be [(PREENCODED, block)] with a block made by `encode_header`s.
        The future raises ConnectionLost or StreamRefused. Check `has_capacity()` first."""
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, headers)
        if not self._blocked and conn.local_flow_control_window(stream_id) >= len(body):
            conn.send_data(stream_id, body, end_stream=True)
        else:
            self._blocked.append((stream_id, body))
        pending = _Pending(self._loop.create_future())
        self._pending[stream_id] = pending
        self._schedule_flush()
        return stream_id, pending.future

    def cancel(self, stream_id: int) -> None:
        """Give up on a request (a timeout): reset its stream, free its slot."""
        if stream_id in self._pending:
            self._finish(stream_id, ConnectionLost("no answer in time"))
            self._schedule_flush()

    def close(self) -> None:
        self.accepting = False
        if self._transport is not None:
            self.conn.close_connection()
            self._flush()
            self._transport.close()

    # -- asyncio.Protocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            },
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(ConnectionLost(f"HTTP/2 protocol error: {exc}"))
            self._flush()
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        self._drain_blocked()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.accepting = False
        self._fail_all(ConnectionLost(f"connection closed: {exc or 'by peer'}"))
        if not self.ready.done():
            self.ready.set_exception(ConnectionLost("connection closed before SETTINGS"))
            self.ready.exception()  # retrieved by whoever awaits; silence the warning otherwise

    # -- h2 events ---------------------------------------------------------
    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        pending = self._pending.get(event.stream_id)
        if pending is not None:
            headers = event.headers or []
            pending.headers = headers  # type: ignore[assignment]
            for name, value in headers:
                if name == b":status":
                    pending.status = int(value)
                    break

    def _on_data(self, event: h2.events.DataReceived) -> None:
        pending = self._pending.get(event.stream_id)
        if pending is not None and event.data:
            pending.body += event.data
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        self._finish(event.stream_id, None)

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        error = StreamRefused if refused else ConnectionLost
        self._finish(event.stream_id, error(f"stream reset by peer ({event.error_code!r})"))

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self.max_streams = self.conn.remote_settings.max_concurrent_streams
        if not self.ready.done():
            self.accepting = True
            self.ready.set_result(None)
        self._wake()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.accepting = False
        last = event.last_stream_id or 0
        for stream_id in [sid for sid in self._pending if sid > last]:
            self._finish(stream_id, StreamRefused("GOAWAY before this stream"))
        if not self._pending and self._transport is not None:
            self._transport.close()

    # -- plumbing ------------------------------------------------------------
    def _finish(self, stream_id: int, error: Exception | None) -> None:
        pending = self._pending.pop(stream_id, None)
        self.conn.forget_stream(stream_id)
        if pending is not None and not pending.future.done():
            if error is None:
                self.answered += 1
                pending.future.set_result((pending.status, pending.headers, pending.body))
            else:
                pending.future.set_exception(error)
        if not self.accepting and not self._pending and self._transport is not None:
            self._transport.close()  # draining after GOAWAY is over
        self._wake()

    def _fail_all(self, error: ConnectionLost) -> None:
        pending, self._pending = self._pending, {}
        self._blocked.clear()
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error)
        self._wake()

    def _drain_blocked(self) -> None:
        blocked, conn = self._blocked, self.conn
        while blocked:
            stream_id, body = blocked[0]
            if stream_id not in self._pending:
                blocked.popleft()
                continue
            if conn.local_flow_control_window(stream_id) < len(body):
                return
            blocked.popleft()
            conn.send_data(stream_id, body, end_stream=True)

    def _wake(self) -> None:
        if self._on_slot_free is not None:
            self._on_slot_free()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


_HANDLERS: dict[type, Any] = {
    h2.events.ResponseReceived: H2ClientProtocol._on_response,
    h2.events.DataReceived: H2ClientProtocol._on_data,
    h2.events.StreamEnded: H2ClientProtocol._on_stream_ended,
    h2.events.StreamReset: H2ClientProtocol._on_stream_reset,
    h2.events.RemoteSettingsChanged: H2ClientProtocol._on_settings,  # window updates: see _drain_blocked
    h2.events.ConnectionTerminated: H2ClientProtocol._on_goaway,
}
