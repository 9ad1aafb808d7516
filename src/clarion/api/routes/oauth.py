"""OAuth2 client credentials (RFC 6749 §4.4): a key id and its key → a JWT."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from clarion.api.auth import mint_jwt
from clarion.api.deps import RuntimeDep
from clarion.security import hash_api_key
from clarion.store.tables import api_keys

router = APIRouter(tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class OAuthError(BaseModel):
    error: str
    error_description: str | None = None


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 §5.2 errors are their own format, not problem+json.
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "WWW-Authenticate": "Basic" if status == 401 else ""},
    )


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses={400: {"model": OAuthError}, 401: {"model": OAuthError}},
)
async def token(
    runtime: RuntimeDep,
    grant_type: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
) -> JSONResponse:
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    query = sa.select(api_keys.c.id).where(
        api_keys.c.id == client_id,
        api_keys.c.key_hash == hash_api_key(client_secret),
        api_keys.c.revoked_at.is_(None),
    )
    async with runtime.engine.connect() as conn:
        key_id = (await conn.execute(query)).scalar()
    if key_id is None:
        return _oauth_error(401, "invalid_client", "unknown client_id, wrong client_secret, or a revoked key")
    access_token, lifetime = mint_jwt(runtime, key_id)
    body = TokenResponse(access_token=access_token, expires_in=lifetime)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
