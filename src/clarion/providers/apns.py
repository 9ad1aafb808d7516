"""APNs with token authentication over HTTP/2 (h2, see `http2.py`).

One `APNsClient` per app's credentials. A provider JWT serves every request
for ~50 minutes (Apple answers TooManyProviderTokenUpdates to a fresh token
per request); `ExpiredProviderToken` renews it once and resends at once.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.providers.base import Failed, Outcome, Platform, Push, Retry, Sent
from clarion.providers.h2pool import H2Pool, PoolBackingOff
from clarion.providers.http2 import PREENCODED, ConnectionLost, Header, StreamRefused, encode_header
from clarion.providers.outcomes import Verdict, outcome_for, parse_retry_after, status_verdict
from clarion.providers.payloads import MAX_PAYLOAD_BYTES, apns_payload, is_data_only

V = Verdict
# Apple's documented reasons ("Handling notification responses from APNs").
APNS_REASONS: dict[str, Verdict] = {
    "BadDeviceToken": V.INVALID_TOKEN,
    "Unregistered": V.INVALID_TOKEN,
    "DeviceTokenNotForTopic": V.INVALID_TOKEN,
    "ExpiredToken": V.INVALID_TOKEN,
    "TooManyRequests": V.RETRY,
    "InternalServerError": V.RETRY,
    "ServiceUnavailable": V.RETRY,
    "Shutdown": V.RETRY,
    "IdleTimeout": V.RETRY,
    "TooManyProviderTokenUpdates": V.RETRY,
    "ExpiredProviderToken": V.RENEW_AUTH,
    "InvalidProviderToken": V.CREDENTIALS,
    "MissingProviderToken": V.CREDENTIALS,
    "BadCertificate": V.CREDENTIALS,
    "BadCertificateEnvironment": V.CREDENTIALS,
    "BadEnvironmentKeyIdInToken": V.CREDENTIALS,
    "Forbidden": V.CREDENTIALS,
    "TopicDisallowed": V.CREDENTIALS,
    "BadTopic": V.CREDENTIALS,
    "MissingTopic": V.CREDENTIALS,
    "PayloadTooLarge": V.FAILED,
    "PayloadEmpty": V.FAILED,
    "BadCollapseId": V.FAILED,
    "BadExpirationDate": V.FAILED,
    "BadMessageId": V.FAILED,
    "BadPriority": V.FAILED,
    "BadPath": V.FAILED,
    "DuplicateHeaders": V.FAILED,
    "InvalidPushType": V.FAILED,
    "MethodNotAllowed": V.FAILED,
    "MissingDeviceToken": V.FAILED,
}
TOKEN_LIFETIME_SECONDS = 50 * 60  # Apple accepts 20-60 minutes
REQUEST_TIMEOUT_SECONDS = 30.0
SEND_PASSES = 3  # first try, then resends of refused streams / after a token renewal
_HEX = frozenset("0123456789abcdefABCDEF")


def load_apns_key(private_key_pem: str) -> ec.EllipticCurvePrivateKey:
    """The .p8 key as a P-256 private key; raises ValueError if it is not one."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("private_key is not a PEM private key (the .p8 file's contents)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("private_key must be an ES256 (P-256) key, as Apple issues")
    return key


class ProviderToken:
    """The cached `authorization` header value; minted again after its lifetime."""

    def __init__(
        self, team_id: str, key_id: str, key: ec.EllipticCurvePrivateKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._team_id, self._key_id, self._key, self._clock = team_id, key_id, key, clock
        self._header = b""
        self._minted_at = 0.0
        self.minted = 0

    def header(self) -> bytes:
        if self._clock() - self._minted_at >= TOKEN_LIFETIME_SECONDS:
            self._mint()
        return self._header

    def renew(self, stale: bytes) -> None:
        """Replace the token `stale` (rejected as expired) unless already replaced."""
        if self._header == stale:
            self._mint()

    def _mint(self) -> None:
        now = self._clock()
        claims = {"iss": self._team_id, "iat": int(now)}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._key_id})
        self._header, self._minted_at = b"bearer " + token.encode(), now
        self.minted += 1


SENT = Sent()


class _Resend:
    """Not an outcome yet: resend in the next pass, or give `final` after the last."""

    __slots__ = ("final",)

    def __init__(self, final: Retry) -> None:
        self.final = final


class APNsClient:
    """The Provider for one app's APNs token credentials."""

    platform: Platform = "ios"

    def __init__(
        self, *, team_id: str, key_id: str, private_key: str, topic: str, environment: str = "production",
        base_url: str, ssl_context: ssl.SSLContext, max_connections: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = urlsplit(base_url)
        host, port = url.hostname or "", url.port or 443
        self._token = ProviderToken(team_id, key_id, load_apns_key(private_key), clock)
        self._topic = topic.encode()
        self._authority = (host if port == 443 else f"{host}:{port}").encode()
        self._environment = environment
        self._pool = H2Pool(host, port, ssl_context, max_connections=max_connections)
        self._fixed_blocks: dict[tuple[bytes, bool, bool], bytes] = {}
        # Pseudo-headers come first (RFC 9113 §8.3); :path follows these three.
        self._pseudo_block = b"".join(encode_header(name, value) for name, value in (
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", self._authority)))

    @property
    def tokens_minted(self) -> int:
        """Provider JWTs made so far (one should serve thousands of sends)."""
        return self._token.minted

    async def send(self, pushes: Sequence[Push]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(pushes)
        todo = list(range(len(pushes)))
        for attempt in range(SEND_PASSES):
            todo = await self._send_pass(pushes, todo, outcomes, final=attempt == SEND_PASSES - 1)
            if not todo:
                break
        return outcomes  # type: ignore[return-value]  # every slot is filled by the last pass

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _send_pass(
        self, pushes: Sequence[Push], todo: list[int], outcomes: list[Outcome | None], final: bool,
    ) -> list[int]:
        """Put every push of `todo` in flight, then collect; returns the ones to resend."""
        auth, now = self._token.header(), int(time.time())
        started = []
        for index in todo:
            request = self._request(pushes[index], auth, now)
            if isinstance(request, Failed):
                outcomes[index] = request
                continue
            conn = self._pool.available()
            if conn is None:
                try:
                    conn = await self._pool.acquire(REQUEST_TIMEOUT_SECONDS)
                except ConnectionLost as exc:
                    outcomes[index] = _connection_retry(exc)
                    continue
            stream_id, future = conn.request(*request)
            started.append((index, conn, stream_id, future))
        if started:
            await asyncio.wait([item[3] for item in started], timeout=REQUEST_TIMEOUT_SECONDS)
        resend = []
        for index, conn, stream_id, future in started:
            if not future.done():
                conn.cancel(stream_id)
            outcome = self._outcome(future, auth)
            if isinstance(outcome, _Resend):
                if not final:
                    resend.append(index)
                    continue
                outcome = outcome.final
            outcomes[index] = outcome
        return resend

    def _request(self, push: Push, auth: bytes, now: int) -> tuple[list[Header], bytes] | Failed:
        token = push.token
        if not 32 <= len(token) <= 200 or not _HEX.issuperset(token):
            return Failed("BadDeviceToken", "not a hexadecimal APNs device token", invalid_token=True)
        payload = apns_payload(push)
        if len(payload) > MAX_PAYLOAD_BYTES:
            return Failed("PayloadTooLarge", f"APNs payload is {len(payload)} bytes (max {MAX_PAYLOAD_BYTES})")
        background = is_data_only(push)
        expiration = push.expires_at if push.expires_at is not None else (now + push.ttl if push.ttl > 0 else 0)
        block = (
            self._pseudo_block
            + encode_header(b":path", b"/3/device/" + token.encode())
            + self._fixed_block(auth, background, push.priority == "high")
            + encode_header(b"apns-expiration", b"%d" % expiration)
            + encode_header(b"apns-id", push.delivery_id.encode())
        )
        if push.collapse_key:
            block += encode_header(b"apns-collapse-id", _collapse_id(push.collapse_key))
        return [(PREENCODED, block)], payload

    def _fixed_block(self, auth: bytes, background: bool, high: bool) -> bytes:
        """HPACK of the headers every request repeats, encoded once per combination
        (DESIGN.md: HPACK is the hotspot of an h2 client)."""
        key = (auth, background, high)
        block = self._fixed_blocks.get(key)
        if block is None:
            if len(self._fixed_blocks) > 16:
                self._fixed_blocks.clear()  # old provider tokens
            block = b"".join(encode_header(name, value) for name, value in (
                (b"authorization", auth), (b"apns-topic", self._topic),
                (b"apns-push-type", b"background" if background else b"alert"),
                (b"apns-priority", b"10" if high and not background else b"5"),
            ))
            self._fixed_blocks[key] = block
        return block

    def _outcome(self, future: asyncio.Future[tuple[int, list[Header], bytes]], auth: bytes) -> Outcome | _Resend:
        try:
            status, headers, body = future.result()
        except StreamRefused as exc:
            return _Resend(_connection_retry(exc))
        except ConnectionLost as exc:
            return _connection_retry(exc)
        if status == 200:
            return SENT
        reason, after = _error_reason(status, headers, body)
        verdict = APNS_REASONS.get(reason) or (V.INVALID_TOKEN if status == 410 else status_verdict(status))
        if verdict is V.RENEW_AUTH:
            self._token.renew(auth)
            return _Resend(Retry(reason, f"{status} {reason}"))
        return outcome_for(verdict, reason, f"{status} {reason}", after)


def _error_reason(status: int, headers: list[Header], body: bytes) -> tuple[str, float | None]:
    try:
        reason = str(json.loads(body)["reason"])
    except (ValueError, KeyError, TypeError):
        reason = str(status)
    after = next((parse_retry_after(value) for name, value in headers if name == b"retry-after"), None)
    return reason, after


def _collapse_id(collapse_key: str) -> bytes:
    # apns-collapse-id is at most 64 bytes; cut on a character boundary, no line breaks.
    clean = collapse_key.replace("\r", " ").replace("\n", " ")
    return clean.encode()[:64].decode(errors="ignore").encode()


def _connection_retry(exc: ConnectionLost) -> Retry:
    after = exc.retry_after if isinstance(exc, PoolBackingOff) else None
    return Retry("connection_error", str(exc), after)
