"""Who is calling: the admin token, an app's secret or publishable key, or a
JWT minted from a key by /oauth/token. Scopes are checked by the deps."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Literal

import jwt
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.security import hash_api_key
from clarion.store.tables import api_keys, apps

Kind = Literal["admin", "secret", "publishable"]
JWT_ALGORITHM = "HS256"
JWT_LIFETIME_SECONDS = 3600
JWT_AUDIENCE = "clarion"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Kind
    app_pk: int | None = None
    app_id: str | None = None
    key_id: str | None = None


class AuthError(Exception):
    """No credential, or one that is wrong, expired or revoked."""


async def authenticate(runtime: Runtime, credential: str) -> Principal:
    """Resolve a bearer credential, or raise AuthError."""
    if hmac.compare_digest(hash_api_key(credential), runtime.admin_token_hash):
        return Principal("admin")
    if credential.startswith(("sk_", "pk_")):
        return await _principal_for(runtime, api_keys.c.key_hash == hash_api_key(credential))
    key_id = _key_id_from_jwt(runtime, credential)
    return await _principal_for(runtime, api_keys.c.id == key_id)


def mint_jwt(runtime: Runtime, key_id: str) -> tuple[str, int]:
    now = int(time.time())
    claims = {"sub": key_id, "aud": JWT_AUDIENCE, "iat": now, "exp": now + JWT_LIFETIME_SECONDS}
    return jwt.encode(claims, runtime.jwt_key, algorithm=JWT_ALGORITHM), JWT_LIFETIME_SECONDS


def _key_id_from_jwt(runtime: Runtime, token: str) -> str:
    try:
        claims = jwt.decode(
            token,
            runtime.jwt_key,
            algorithms=[JWT_ALGORITHM],  # never trust the token's own `alg`
            audience=JWT_AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError("the bearer token is not valid or has expired") from exc
    return str(claims["sub"])


async def _principal_for(runtime: Runtime, condition: sa.ColumnElement[bool]) -> Principal:
    query = (
        sa.select(api_keys.c.id, api_keys.c.kind, apps.c.pk, apps.c.id.label("app_id"))
        .join(apps, apps.c.pk == api_keys.c.app_pk)
        .where(condition, api_keys.c.revoked_at.is_(None))
    )
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        raise AuthError("the key is not valid or has been revoked")
    return Principal(row.kind, app_pk=row.pk, app_id=row.app_id, key_id=row.id)
