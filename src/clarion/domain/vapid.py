"""VAPID key pairs (RFC 8292): P-256, the public key as an uncompressed
point in base64url, the private key as its 32-byte scalar."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_vapid_keypair() -> tuple[bytes, str]:
    """(private scalar, public key base64url)."""
    return keypair_from_private(ec.generate_private_key(ec.SECP256R1()))


def keypair_from_private(key: ec.EllipticCurvePrivateKey) -> tuple[bytes, str]:
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return private, b64url(public)


def parse_vapid_private_key(text: str) -> tuple[bytes, str]:
    """Accepts a PEM or a base64url 32-byte scalar; raises ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the VAPID key must be a P-256 (prime256v1) EC key")
        return keypair_from_private(key)
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("the VAPID key must be a PEM or a base64url 32-byte P-256 private key")
    return keypair_from_private(ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
