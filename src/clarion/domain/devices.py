"""Device registration rules per platform: pure checks, no I/O.

Each check raises `ValueError` with a message a developer can act on."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from clarion.domain.addresses import is_forbidden_address, literal_address
from clarion.domain.vapid import b64url_decode

APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
# FCM registration tokens are long base64url-ish strings with a colon.
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-.]{20,4096}$")
B64URL = re.compile(r"^[A-Za-z0-9_\-]+=*$")


def normalize_apns_token(token: str) -> str:
    if not APNS_TOKEN.match(token):
        raise ValueError("an APNs device token is 64 hexadecimal characters")
    return token.lower()


def check_fcm_token(token: str) -> str:
    if not FCM_TOKEN.match(token):
        raise ValueError("an FCM registration token is 20–4096 characters of [A-Za-z0-9_:-.]")
    return token


def check_endpoint(endpoint: str, allow_local: bool) -> str:
    """https only; a literal loopback/private address only when allowed."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("a Web Push endpoint must be an https:// URL")
    address = literal_address(parts.hostname)
    if address is not None and not allow_local and is_forbidden_address(address):
        raise ValueError("a Web Push endpoint may not point at a loopback, private or link-local address")
    return endpoint


def check_p256dh(value: str) -> str:
    raw = _b64url(value, "p256dh")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise ValueError("keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)") from exc
    if len(raw) != 65:
        raise ValueError("keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)")
    return value


def check_auth_secret(value: str) -> str:
    if len(_b64url(value, "auth")) != 16:
        raise ValueError("keys.auth must be 16 bytes, base64url")
    return value


def _b64url(value: str, name: str) -> bytes:
    if not B64URL.match(value):
        raise ValueError(f"keys.{name} must be base64url")
    try:
        return b64url_decode(value.rstrip("="))
    except ValueError as exc:
        raise ValueError(f"keys.{name} must be base64url") from exc
