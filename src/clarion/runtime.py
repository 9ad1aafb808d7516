"""What a running Clarion process holds: settings, the database engine and
the keys, created once at start-up and handed to the API and the workers."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.config import Settings
from clarion.keyring import Keyring, write_private
from clarion.security import SecretBox, hash_api_key
from clarion.store.db import create_engine

ADMIN_TOKEN_FILE = "admin-token"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    box: SecretBox
    admin_token_hash: str
    # HS256 key for /oauth/token JWTs, derived from the admin token's hash
    # so every process of one deployment accepts the same tokens, and a
    # master-key rotation does not log every client out.
    jwt_key: bytes
    # Started by `clarion serve` / `clarion worker`; None for `clarion api`.
    pipeline: Any = None
    # Token buckets for rate limits (clarion.api.ratelimit); set by create_app.
    limiter: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()
        broker = self.extras.pop("broker", None)  # opened by `clarion api` to publish replays
        if broker is not None:
            await broker.close()
        await self.engine.dispose()


def build_runtime(settings: Settings, *, announce: bool = True) -> Runtime:
    """Create the data dir, the master key and admin token when unset, and the engine."""
    # Only its owner may read the data dir: it holds the database, keys and token.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    box = Keyring(settings).box()
    admin_token = settings.admin_token or _admin_token_file(settings, announce)
    admin_hash = hash_api_key(admin_token)
    return Runtime(
        settings=settings,
        engine=create_engine(settings),
        box=box,
        admin_token_hash=admin_hash,
        jwt_key=hashlib.sha256(b"clarion-oauth\x00" + admin_hash.encode()).digest(),
    )


def _admin_token_file(settings: Settings, announce: bool) -> str:
    """The generated admin token, kept in the data dir (0600) and printed once, when made."""
    path = settings.data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = "adm_" + secrets.token_urlsafe(32)
    write_private(path, token, exclusive=True)
    if announce:
        print(f"Clarion admin token (shown once, kept in {path}): {token}", flush=True)
    return token
