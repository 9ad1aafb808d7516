"""What a running Clarion process holds: settings, the database engine and
the keys, created once at start-up and handed to the API and the workers."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.config import Settings
from clarion.security import SecretBox, decode_master_key, encode_master_key, hash_api_key
from clarion.store.db import create_engine

ADMIN_TOKEN_FILE = "admin-token"
SECRET_KEY_FILE = "secret-key"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    box: SecretBox
    admin_token_hash: str
    # HS256 key for /oauth/token JWTs, derived from the master key so every
    # process that shares CLARION_SECRET_KEY accepts the same tokens.
    jwt_key: bytes
    # Started by `clarion serve` / `clarion worker`; None for `clarion api`.
    pipeline: Any = None
    # Token buckets for rate limits (clarion.api.ratelimit); set by create_app.
    limiter: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()
        await self.engine.dispose()


def build_runtime(settings: Settings, *, announce: bool = True) -> Runtime:
    """Create the data dir, the master key and admin token when unset, and the engine."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    master_key = _master_key(settings)
    admin_token = settings.admin_token or _generated_secret(
        settings.data_dir / ADMIN_TOKEN_FILE, lambda: "adm_" + secrets.token_urlsafe(32), announce
    )
    return Runtime(
        settings=settings,
        engine=create_engine(settings),
        box=SecretBox(master_key),
        admin_token_hash=hash_api_key(admin_token),
        jwt_key=hashlib.sha256(b"clarion-oauth\x00" + master_key).digest(),
    )


def _master_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return decode_master_key(settings.secret_key)
    text = _generated_secret(
        settings.data_dir / SECRET_KEY_FILE, lambda: encode_master_key(secrets.token_bytes(32)), announce=False
    )
    return decode_master_key(text)


def _generated_secret(path: Path, make: Any, announce: bool) -> str:
    """Read a secret kept in the data dir, or create it with mode 0600.

    The admin token is printed once, when it is created, and never again."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    if announce and path.name == ADMIN_TOKEN_FILE:
        print(f"Clarion admin token (shown once, kept in {path}): {value}", flush=True)
    return value
