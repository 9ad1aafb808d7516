"""FastAPI dependencies as `Annotated` aliases: `RuntimeDep`, `SecretApp`, ..."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clarion.api.auth import AuthError, Kind, Principal, authenticate
from clarion.api.errors import Problem
from clarion.api.middleware import add_response_headers
from clarion.api.ratelimit import headers as ratelimit_headers
from clarion.api.ratelimit import rate_for
from clarion.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="admin token, sk_/pk_ key, or a JWT from /oauth/token")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Problem(401, "send `Authorization: Bearer <key>`", headers={"WWW-Authenticate": "Bearer"})
    try:
        return await authenticate(runtime, credentials.credentials)
    except AuthError as exc:
        raise Problem(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _requiring(*allowed: Kind):  # type: ignore[no-untyped-def]
    async def check(principal: PrincipalDep) -> Principal:
        if principal.kind not in allowed:
            raise Problem(403, _scope_hint(principal.kind, allowed))
        return principal

    return check


def _scope_hint(kind: Kind, allowed: tuple[Kind, ...]) -> str:
    if kind == "admin":
        return "the admin token manages apps; use the app's secret key for this call"
    return f"a {kind} key may not do this; use {' or '.join(allowed)} credentials"


AdminOnly = Annotated[Principal, Depends(_requiring("admin"))]
AdminOrSecret = Annotated[Principal, Depends(_requiring("admin", "secret"))]
SecretApp = Annotated[Principal, Depends(_requiring("secret"))]
AnyAppKey = Annotated[Principal, Depends(_requiring("secret", "publishable"))]


def rate_limited(budget: str):  # type: ignore[no-untyped-def]
    """A dependency taking one token from the caller's `budget` bucket (per key);
    429 with Retry-After and RateLimit-* headers when it is empty."""

    async def check(runtime: RuntimeDep, principal: PrincipalDep, request: Request) -> None:
        rate = rate_for(runtime.settings, budget)
        if rate <= 0:
            return  # 0 turns the limit off
        key = principal.key_id or principal.kind
        decision = await runtime.limiter.take(budget, key, rate)
        limit_headers = ratelimit_headers(decision)
        if not decision.allowed:
            retry = str(max(1, math.ceil(decision.retry_after)))
            raise Problem(429, f"rate limit for {budget} exceeded; retry after {retry} s",
                          headers={**limit_headers, "Retry-After": retry})
        add_response_headers(request, limit_headers)

    return Depends(check)
