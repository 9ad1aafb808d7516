"""Secrets at rest: AES-GCM encryption under a keyring, keyed token hashes,
key hashing. Nothing here logs or returns a secret.

Every ciphertext names the key that made it (a 4-byte key id), so a keyring
holding the new master key and the previous ones reads everything while
`clarion rotate-key` re-encrypts the rows one batch at a time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12
_KEY_ID_BYTES = 4
_VERSION = b"\x02"  # version byte, key id, nonce, ciphertext+tag


def key_id(master_key: bytes) -> bytes:
    return hashlib.sha256(b"clarion-key-id\x00" + master_key).digest()[:_KEY_ID_BYTES]


class UnknownKey(ValueError):
    """A ciphertext made under a key this process does not hold."""


class SecretBox:
    """AES-256-GCM under the primary master key; decrypts under any key of
    the ring. `refresh`, when given, returns the ring anew (e.g. re-read from
    the data dir) and is asked when a ciphertext names an unknown key."""

    def __init__(
        self,
        master_key: bytes,
        previous: Sequence[bytes] = (),
        refresh: Callable[[], tuple[bytes, list[bytes]]] | None = None,
        refresh_every: float = 2.0,
    ) -> None:
        self._refresh = refresh
        self._refresh_every = refresh_every
        self._refreshed = time.monotonic()
        self._load(master_key, list(previous))

    def _maybe_refresh(self) -> None:
        """Pick up a primary key that rotate-key installed, within seconds."""
        if self._refresh is not None and time.monotonic() - self._refreshed > self._refresh_every:
            self._refreshed = time.monotonic()
            self._load(*self._refresh())

    def _load(self, master_key: bytes, previous: list[bytes]) -> None:
        for key in (master_key, *previous):
            if len(key) != 32:
                raise ValueError("a master key must be 32 bytes")
        self.primary_id = key_id(master_key)
        self._primary = AESGCM(master_key)
        self._ring = {key_id(k): AESGCM(k) for k in (*previous, master_key)}
        self._lookup_keys = [_lookup_key(master_key)] + [_lookup_key(k) for k in previous]

    def encrypt(self, plaintext: bytes, context: bytes = b"") -> bytes:
        self._maybe_refresh()
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + self.primary_id + nonce + self._primary.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes = b"") -> bytes:
        kid, nonce, ciphertext = _split(blob)
        aead = self._ring.get(kid)
        if aead is None and self._refresh is not None:
            self._load(*self._refresh())
            aead = self._ring.get(kid)
        if aead is None:
            raise UnknownKey(
                "a secret is encrypted under a master key this process does not hold: "
                "set CLARION_PREVIOUS_SECRET_KEYS to the old key until `clarion rotate-key` has finished"
            )
        try:
            return aead.decrypt(nonce, ciphertext, context)
        except InvalidTag as exc:
            raise ValueError("a stored secret failed its integrity check (wrong context or tampered)") from exc

    def is_current(self, blob: bytes) -> bool:
        """Whether the blob is already under the primary key."""
        return _split(blob)[0] == self.primary_id

    def lookup_hash(self, value: str) -> str:
        """A keyed hash that finds a device by its token without storing it."""
        return _hmac(self._lookup_keys[0], value)

    def lookup_hashes(self, value: str) -> list[str]:
        """The hash under every key of the ring: a lookup during a rotation."""
        return [_hmac(key, value) for key in self._lookup_keys]


def _split(blob: bytes) -> tuple[bytes, bytes, bytes]:
    if blob[:1] != _VERSION:
        raise ValueError("unknown ciphertext format")
    head = 1 + _KEY_ID_BYTES
    return blob[1:head], blob[head : head + _NONCE_BYTES], blob[head + _NONCE_BYTES :]


def _lookup_key(master_key: bytes) -> bytes:
    return hashlib.sha256(b"clarion-lookup\x00" + master_key).digest()


def _hmac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def hash_api_key(key: str) -> str:
    """API keys carry 256 bits of randomness, so one SHA-256 is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def new_master_key() -> bytes:
    return secrets.token_bytes(32)


def decode_master_key(text: str) -> bytes:
    """A master key: 32 bytes as base64url (or 64 hex characters)."""
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
