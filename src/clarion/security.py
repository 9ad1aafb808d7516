"""Secrets at rest: AES-GCM encryption, keyed token hashes, key hashing.

Nothing here logs or returns a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12
# One version byte in front of every ciphertext, so a future scheme can coexist.
_VERSION = b"\x01"


class SecretBox:
    """AES-256-GCM under the master key; keyed HMAC for lookups by token."""

    def __init__(self, master_key: bytes, old_keys: tuple[bytes, ...] = ()) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self._old = [AESGCM(k) for k in old_keys]
        self._lookup_key = hashlib.sha256(b"clarion-lookup\x00" + master_key).digest()

    def encrypt(self, plaintext: bytes, context: bytes = b"") -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes = b"") -> bytes:
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        for aead in (self._aead, *self._old):
            try:
                return aead.decrypt(nonce, ciphertext, context)
            except Exception:  # noqa: BLE001 - InvalidTag: try the next key
                continue
        raise ValueError("cannot decrypt: wrong master key (CLARION_SECRET_KEY)?")

    def lookup_hash(self, value: str) -> str:
        """A keyed hash that finds a device by its token without storing it."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).hexdigest()


def hash_api_key(key: str) -> str:
    """API keys carry 256 bits of randomness, so one SHA-256 is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def decode_master_key(text: str) -> bytes:
    """CLARION_SECRET_KEY: 32 bytes as base64url (or 64 hex characters)."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ValueError("CLARION_SECRET_KEY must be 32 bytes, base64url or hex") from exc
    if len(key) != 32:
        raise ValueError("CLARION_SECRET_KEY must decode to 32 bytes; make one with `openssl rand -hex 32`")
    return key


def encode_master_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")
