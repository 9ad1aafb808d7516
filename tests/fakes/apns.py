"""A fake APNs: HTTP/2 over TLS on 127.0.0.1, checking what Apple checks.

    async with FakeAPNs() as apns:
        client = APNsClient(**apns.credentials(), base_url=apns.url,
                            ssl_context=client_ssl_context(apns.ca_pem_path, alpn=["h2"]))
        apns.fail(410, "Unregistered", token=some_token)   # scripted outcomes
        ...
        apns.received, apns.jwts, apns.requests

Every request's provider JWT is verified (ES256 signature with the key's
public half, `kid`, `iss`, age), and every header and the payload are checked;
a violation gets the reason Apple would give. Verification of a JWT is cached
per token string, as a fast sink must: benchmarks drive this server too.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hpack import Decoder
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from tests.fakes.scripting import take_scripted
from tests.fakes.tls import ca_pem_path, server_ssl_context

_PATH = re.compile(rb"^/3/device/([0-9a-fA-F]{64,200})$")
_PUSH_TYPES = {b"alert", b"background", b"voip", b"complication", b"fileprovider", b"mdm", b"location",
               b"liveactivity", b"pushtotalk", b"widgets", b"controls"}
_CONFIG = h2.config.H2Configuration(
    client_side=False, header_encoding=None, validate_outbound_headers=False,
    normalize_outbound_headers=False, validate_inbound_headers=False, normalize_inbound_headers=False,
)
_WINDOW = 1 << 24


@dataclass
class Scripted:
    status: int
    reason: str
    retry_after: str | None = None
    times: int | None = None  # None: every time


@dataclass
class ReceivedPush:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class _Behaviour:
    per_token: dict[str, list[Scripted]] = field(default_factory=dict)
    everyone: list[Scripted] = field(default_factory=list)
    goaway_after: int | None = None  # requests on a connection before GOAWAY
    drop_after: int | None = None  # requests on a connection before an abrupt close


def _literal(name: bytes, value: bytes) -> bytes:
    # HPACK literal without indexing, new name, no Huffman: stateless and cheap.
    return b"\x00" + bytes(encode_integer(len(name), 7)) + name + bytes(encode_integer(len(value), 7)) + value


_STATUS = {200: b"\x88", 400: b"\x8c", 404: b"\x8d", 500: b"\x8e"}


def _status(code: int) -> bytes:
    return _STATUS.get(code) or b"\x08\x03" + str(code).encode()  # literal, name = static :status


class FakeAPNs:
    def __init__(
        self, *, team_id: str = "TEAM123456", key_id: str = "KEY1234567", topic: str = "com.example.app",
        max_concurrent_streams: int = 1000, record: bool = True, token_max_age: int = 3600,
        fast_hpack: bool = False,
    ) -> None:
        self.fast_hpack = fast_hpack
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key()
        self.max_concurrent_streams = max_concurrent_streams
        self.record = record
        self.token_max_age = token_max_age
        self.received: list[ReceivedPush] = []
        self.jwts: set[str] = set()  # distinct provider tokens seen
        self.requests = 0
        self.connections = 0
        self._verdicts: dict[bytes, str | None] = {}  # JWT -> None (valid) or the rejection reason
        self._expired: set[bytes] = set()
        self._behaviour = _Behaviour()
        self._server: asyncio.Server | None = None
        self._protocols: set[_APNsServerProtocol] = set()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> FakeAPNs:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _APNsServerProtocol(self), "127.0.0.1", 0, ssl=server_ssl_context(["h2"]),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for protocol in list(self._protocols):
                protocol.abort()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeAPNs:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem_path(self) -> Path:
        return ca_pem_path()

    @property
    def private_key_pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
        ).decode()

    def credentials(self) -> dict[str, str]:
        """What `PUT /v1/apps/{id}/credentials/apns` would hold for this fake."""
        return {"team_id": self.team_id, "key_id": self.key_id, "private_key": self.private_key_pem,
                "topic": self.topic, "environment": "sandbox"}

    # -- scripting -----------------------------------------------------------
    def fail(self, status: int, reason: str, *, token: str | None = None, retry_after: str | None = None,
             times: int | None = None) -> None:
        """Answer `status`/`reason` to `token` (or to everyone), `times` times or forever."""
        scripted = Scripted(status, reason, retry_after, times)
        if token is None:
            self._behaviour.everyone.append(scripted)
        else:
            self._behaviour.per_token.setdefault(token.lower(), []).append(scripted)

    def goaway_after(self, requests: int | None) -> None:
        """Each connection sends GOAWAY on receiving request number `requests + 1`."""
        self._behaviour.goaway_after = requests

    def drop_after(self, requests: int | None) -> None:
        """Each connection is cut (no GOAWAY) on receiving request number `requests + 1`."""
        self._behaviour.drop_after = requests

    def expire_provider_tokens(self) -> None:
        """Every JWT seen so far is answered 403 ExpiredProviderToken from now on."""
        self._expired.update(self._verdicts)

    def reset(self) -> None:
        self._behaviour = _Behaviour()
        self.received.clear()
        self.jwts.clear()
        self.requests = 0

    # -- checking one request --------------------------------------------------
    def answer(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, str | None, str | None]:
        """(status, reason or None, retry-after) for one complete request."""
        self.requests += 1
        if not _pseudo_headers_first(headers):
            return 400, "BadPseudoHeaderOrder", None  # a real server resets the stream (RFC 9113 §8.3)
        fields = dict(headers)
        if len(fields) != len(headers):
            return 400, "DuplicateHeaders", None
        problem = self._check_request(fields, body)
        if problem is not None:
            return problem
        token = _PATH.match(fields[b":path"]).group(1).decode().lower()  # type: ignore[union-attr]
        scripted = self._scripted(token)
        if scripted is not None:
            return scripted.status, scripted.reason, scripted.retry_after
        if self.record:
            self.received.append(ReceivedPush(
                token, {k.decode(): v.decode() for k, v in headers}, json.loads(body),
            ))
        return 200, None, None

    def _check_request(self, fields: dict[bytes, bytes], body: bytes) -> tuple[int, str, None] | None:
        if fields.get(b":method") != b"POST":
            return 405, "MethodNotAllowed", None
        if fields.get(b":scheme") != b"https" or not _PATH.match(fields.get(b":path", b"")):
            return (400, "BadDeviceToken", None) if fields.get(b":path", b"").startswith(b"/3/device/") \
                else (404, "BadPath", None)
        jwt_problem = self._check_jwt(fields.get(b"authorization"))
        if jwt_problem is not None:
            return 403, jwt_problem, None
        header_problem = _check_apns_headers(fields, self.topic.encode())
        if header_problem is not None:
            return 400, header_problem, None
        return _check_payload(body)

    def _check_jwt(self, authorization: bytes | None) -> str | None:
        if not authorization or not authorization.startswith(b"bearer "):
            return "MissingProviderToken"
        token = authorization[7:]
        if token not in self._verdicts:
            self._verdicts[token] = self._verify_jwt(token.decode())
            self.jwts.add(token.decode())
        if token in self._expired:
            return "ExpiredProviderToken"
        return self._verdicts[token]

    def _verify_jwt(self, token: str) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                options={"require": ["iss", "iat"], "verify_iat": False})
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return "InvalidProviderToken"
        age = time.time() - claims["iat"]
        if age > self.token_max_age:
            return "ExpiredProviderToken"
        return "InvalidProviderToken" if age < -60 else None

    def _scripted(self, token: str) -> Scripted | None:
        return take_scripted(self._behaviour.per_token.get(token), self._behaviour.everyone)

    def response_block(self, status: int, apns_id: bytes, retry_after: str | None) -> bytes:
        block = _status(status) + _literal(b"apns-id", apns_id)
        if retry_after is not None:
            block += _literal(b"retry-after", retry_after.encode())
        if status != 200:
            block += _literal(b"content-type", b"application/json")
        return block


def _pseudo_headers_first(headers: list[tuple[bytes, bytes]]) -> bool:
    regular_seen = False
    for name, _ in headers:
        if name.startswith(b":"):
            if regular_seen:
                return False
        else:
            regular_seen = True
    return True


def _check_apns_headers(fields: dict[bytes, bytes], topic: bytes) -> str | None:
    if b"apns-topic" not in fields:
        return "MissingTopic"
    if fields[b"apns-topic"] != topic:
        return "DeviceTokenNotForTopic"
    push_type = fields.get(b"apns-push-type", b"alert")
    if push_type not in _PUSH_TYPES:
        return "InvalidPushType"
    priority = fields.get(b"apns-priority", b"10")
    if priority not in (b"10", b"5", b"1") or (push_type == b"background" and priority != b"5"):
        return "BadPriority"
    if not fields.get(b"apns-expiration", b"0").isdigit():
        return "BadExpirationDate"
    if len(fields.get(b"apns-collapse-id", b"")) > 64:
        return "BadCollapseId"
    if b"apns-id" in fields:
        try:
            uuid.UUID(fields[b"apns-id"].decode())
        except ValueError:
            return "BadMessageId"
    return None


def _check_payload(body: bytes) -> tuple[int, str, None] | None:
    if not body:
        return 400, "PayloadEmpty", None
    if len(body) > 4096:
        return 413, "PayloadTooLarge", None
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, "BadPayload", None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        return 400, "BadPayload", None
    return None


_STATIC = HeaderTable.STATIC_TABLE


def _integer(data: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    mask = (1 << prefix_bits) - 1
    value = data[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while True:
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def fast_decode(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Decode a header block that never touches the dynamic table and uses no
    Huffman (what Clarion's client and the ceiling script send); None for
    anything else, which then goes to hpack's Decoder with no state changed."""
    headers, i, n = [], 0, len(data)
    while i < n:
        first = data[i]
        if first & 0x80:  # indexed
            index, i = _integer(data, i, 7)
            if not 0 < index <= len(_STATIC):
                return None
            headers.append(_STATIC[index - 1])
            continue
        if first & 0xE0:  # incremental indexing or a table size update: stateful
            return None
        index, i = _integer(data, i, 4)
        if index == 0:
            if data[i] & 0x80:
                return None
            length, i = _integer(data, i, 7)
            name, i = data[i:i + length], i + length
        elif index <= len(_STATIC):
            name = _STATIC[index - 1][0]
        else:
            return None
        if data[i] & 0x80:
            return None
        length, i = _integer(data, i, 7)
        headers.append((name, data[i:i + length]))
        i += length
    return headers


class _FastDecoder:
    """hpack's Decoder behind the fast path above (benchmarks only: the tests
    keep hpack's own decoder so it, not our code, judges the client's HPACK)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_inner", Decoder())

    def decode(self, data: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:
        try:
            headers = fast_decode(data)
        except IndexError:  # truncated: let hpack report it
            headers = None
        return headers or self._inner.decode(data, raw=raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


class _ServerConnection(h2.connection.H2Connection):
    @property
    def open_inbound_streams(self) -> int:  # O(1): answered streams are removed at once
        return len(self.streams)


class _StaticEncoder:
    """h2 encodes our response headers through this: they arrive pre-encoded."""

    header_table_size = 4096

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return headers[0][1]


class _APNsServerProtocol(asyncio.Protocol):
    def __init__(self, fake: FakeAPNs) -> None:
        self.fake = fake
        self.conn = _ServerConnection(config=_CONFIG)
        self.conn.encoder = _StaticEncoder()  # type: ignore[assignment]
        if fake.fast_hpack:
            self.conn.decoder = _FastDecoder()  # type: ignore[assignment]
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        self.requests = 0
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fake._protocols.add(self)
        self.fake.connections += 1
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.fake.max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
        })
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(_WINDOW)
        transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.fake._protocols.discard(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.abort()
            return
        for event in events:
            kind = type(event)
            if kind is h2.events.RequestReceived:
                self.streams[event.stream_id] = (event.headers, bytearray())
            elif kind is h2.events.DataReceived:
                self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is h2.events.StreamEnded:
                self._respond(event.stream_id)
                if self.closing:
                    return
                if self.requests % 32 == 0 and self.transport is not None:
                    # Answer in small batches: the client works on these while we decode the rest.
                    self.transport.write(self.conn.data_to_send())
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def _respond(self, stream_id: int) -> None:
        headers, body = self.streams.pop(stream_id)
        self.requests += 1
        behaviour = self.fake._behaviour
        if behaviour.drop_after is not None and self.requests > behaviour.drop_after:
            self.closing = True
            self.abort()
            return
        if behaviour.goaway_after is not None and self.requests > behaviour.goaway_after:
            self._goaway(stream_id - 2)
            return
        status, reason, retry_after = self.fake.answer(headers, bytes(body))
        apns_id = dict(headers).get(b"apns-id") or str(uuid.uuid4()).encode()
        block = self.fake.response_block(status, apns_id, retry_after)
        if reason is None:
            self.conn.send_headers(stream_id, [(b":block", block)], end_stream=True)
        else:
            self.conn.send_headers(stream_id, [(b":block", block)])
            self.conn.send_data(stream_id, json.dumps({"reason": reason}).encode(), end_stream=True)
        stream = self.conn.streams.pop(stream_id, None)
        if stream is not None:  # remembered, so late frames for it are ignored
            self.conn._closed_streams[stream_id] = stream.closed_by

    def _goaway(self, last_stream_id: int) -> None:
        self.closing = True
        self.conn.close_connection(last_stream_id=max(0, last_stream_id))
        assert self.transport is not None
        self.transport.write(self.conn.data_to_send())
        asyncio.get_running_loop().call_later(0.05, self.transport.close)
