"""Web Push: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID.

Endpoints are URLs chosen by browsers, i.e. by anyone who can register a
device, so the client refuses to connect to loopback, private, link-local and
other non-global addresses unless told otherwise (CLARION_ALLOW_LOCAL_ENDPOINTS).
The check sits in the resolver the HTTP/1.1 pool connects through, so it
applies to the very addresses connected to (no window for DNS rebinding
between a check and the connection), IP-literal hosts included.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import re
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.providers.base import Failed, Outcome, Platform, Push, Retry, Sent
from clarion.providers.http1 import Http1Pool, resolve
from clarion.providers.outcomes import Verdict, outcome_for, parse_retry_after, status_verdict
from clarion.providers.payloads import MAX_PAYLOAD_BYTES, WEBPUSH_OVERHEAD, webpush_payload
from clarion.providers.webpush_encryption import encrypt as encrypt_message

V = Verdict
# Push services answer 201 Created; these are the other answers that mean something.
WEBPUSH_STATUSES: dict[int, Verdict] = {
    404: V.INVALID_TOKEN,  # subscription gone
    410: V.INVALID_TOKEN,
    413: V.FAILED,  # payload too large
    400: V.FAILED,
    403: V.FAILED,  # the subscription was made for another VAPID key
    401: V.CREDENTIALS,  # VAPID rejected
    429: V.RETRY,
}
VAPID_LIFETIME_SECONDS = 12 * 3600  # RFC 8292 allows at most 24 h
VAPID_RENEW_MARGIN_SECONDS = 3600
REQUEST_TIMEOUT_SECONDS = 30.0
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class EndpointRefused(OSError):
    """The endpoint resolves to an address Clarion will not connect to."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key from PEM, base64url DER, or the base64url raw 32-byte scalar."""
    try:
        if value.lstrip().startswith("-----BEGIN"):
            key: Any = serialization.load_pem_private_key(value.encode(), password=None)
        else:
            raw = b64url_decode(value.strip())
            key = (ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()) if len(raw) == 32
                   else serialization.load_der_private_key(raw, password=None))
    except (ValueError, TypeError) as exc:
        raise ValueError("vapid_private_key is not a P-256 private key (PEM or base64url)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("vapid_private_key must be a P-256 key")
    return key


def vapid_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The application server key browsers subscribe with (base64url, uncompressed point)."""
    return b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def is_refused_address(address: str) -> bool:
    """True for anything but a global unicast address (loopback, private, link-local,
    unspecified, multicast, reserved), and for IPv4-mapped IPv6 addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return True
    return not ip.is_global or ip.is_multicast


def topic_header(collapse_key: str) -> str:
    """RFC 8030 Topic: at most 32 base64url characters; longer keys are hashed."""
    if _TOPIC.match(collapse_key):
        return collapse_key
    return b64url(hashlib.sha256(collapse_key.encode()).digest())[:32]


async def resolve_global(host: str, port: int) -> list[str]:
    """`resolve`, refusing a host with any non-global address (EndpointRefused)."""
    addresses = await resolve(host, port)
    if any(is_refused_address(address) for address in addresses):
        raise EndpointRefused(f"{host} is or resolves to a local or private address")
    return addresses


class VapidSigner:
    """`Authorization: vapid t=…, k=…` per endpoint origin, cached until an hour before expiry."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, subject: str,
                 clock: Callable[[], float] = time.time) -> None:
        if not subject.startswith(("mailto:", "https://")):
            raise ValueError("the VAPID subject must be a mailto: or https:// URL")
        self._key, self._subject, self._clock = private_key, subject, clock
        self._public = vapid_public_key(private_key)
        self._cache: dict[str, tuple[str, float]] = {}
        self.signed = 0

    def header(self, origin: str) -> str:
        cached = self._cache.get(origin)
        now = self._clock()
        if cached is not None and now < cached[1] - VAPID_RENEW_MARGIN_SECONDS:
            return cached[0]
        expires = now + VAPID_LIFETIME_SECONDS
        token = jwt.encode({"aud": origin, "exp": int(expires), "sub": self._subject}, self._key, algorithm="ES256")
        value = f"vapid t={token}, k={self._public}"
        self._cache[origin] = (value, expires)
        self.signed += 1
        return value


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291 aes128gcm body, with a fresh sender key and salt per message.
    Raises ValueError when the subscription's keys are malformed."""
    try:
        return encrypt_message(payload, b64url_decode(p256dh), b64url_decode(auth))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad subscription keys: {exc}") from exc


class WebPushClient:
    """The Provider for one app's VAPID key."""

    platform: Platform = "web"

    def __init__(
        self, *, vapid_private_key: str, subject: str, ssl_context: ssl.SSLContext,
        allow_local_endpoints: bool = False, max_per_origin: int = 20, clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = VapidSigner(load_vapid_key(vapid_private_key), subject, clock)
        self._pool = Http1Pool(ssl_context=ssl_context, resolve=resolve if allow_local_endpoints else resolve_global,
                               max_per_origin=max_per_origin, timeout=REQUEST_TIMEOUT_SECONDS)

    @property
    def vapid_tokens_signed(self) -> int:
        return self._signer.signed

    async def send(self, pushes: Sequence[Push]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _send_one(self, push: Push) -> Outcome:
        request = self._request(push)
        if isinstance(request, Failed):
            return request
        url, headers, body = request
        try:
            response = await self._pool.post(url, headers, body)
        except EndpointRefused as exc:
            return Failed("endpoint_refused", str(exc))
        except ValueError as exc:  # a URL the request line cannot carry: it never will
            return Failed("endpoint_refused", str(exc), invalid_token=True)
        except OSError as exc:  # connection, TLS, DNS, timeout (TimeoutError is an OSError)
            return Retry("connection_error", repr(exc))
        status = response.status
        if 200 <= status < 300:
            return Sent()
        verdict = WEBPUSH_STATUSES.get(status) or status_verdict(status)
        return outcome_for(verdict, str(status), f"push service answered {status}",
                           parse_retry_after(response.headers.get("retry-after")))

    def _request(self, push: Push) -> tuple[SplitResult, dict[str, str], bytes] | Failed:
        url = urlsplit(push.token)
        if url.scheme != "https" or not url.hostname:
            return Failed("endpoint_refused", "Web Push endpoints must be https:// URLs")
        if push.web_keys is None:
            return Failed("missing_keys", "the subscription has no p256dh/auth keys", invalid_token=True)
        payload = webpush_payload(push)
        if len(payload) + WEBPUSH_OVERHEAD > MAX_PAYLOAD_BYTES:  # templates can grow a payload after acceptance
            return Failed("payload_too_large", f"Web Push payload is {len(payload) + WEBPUSH_OVERHEAD} bytes "
                          f"encrypted (max {MAX_PAYLOAD_BYTES})")
        try:
            body = encrypt(payload, push.web_keys.p256dh, push.web_keys.auth)
        except ValueError as exc:
            return Failed("bad_keys", str(exc), invalid_token=True)
        origin = f"{url.scheme}://{url.netloc}"
        headers = {
            "Authorization": self._signer.header(origin),
            "TTL": str(_ttl(push)),
            "Urgency": "high" if push.priority == "high" else "normal",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        if push.collapse_key:
            headers["Topic"] = topic_header(push.collapse_key)
        return url, headers, body


def _ttl(push: Push) -> int:
    return max(0, push.expires_at - int(time.time())) if push.expires_at is not None else push.ttl
