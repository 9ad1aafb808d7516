"""ASGI middleware: a request id and an access log line per request, and a
body-size limit enforced before anything parses the body."""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog

from clarion.api.errors import problem_response
from clarion.logs import get_logger

MAX_BODY_BYTES = 1024 * 1024
EXTRA_HEADERS = "clarion_extra_headers"
log = get_logger("clarion.api")

Scope = dict[str, Any]


def add_response_headers(request: Any, headers: dict[str, str]) -> None:
    """Headers for this request's response, however the route builds it."""
    extra = request.scope.setdefault("state", {}).setdefault(EXTRA_HEADERS, [])
    extra.extend((name.lower().encode(), value.encode()) for name, value in headers.items())


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes: by Content-Length when given, else
    by counting the stream as it arrives. Past the limit the app is told the
    client left, and whatever it answers then is dropped."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(scope, receive, send)
        seen = 0
        rejected = False

        async def limited_receive() -> Any:
            nonlocal seen, rejected
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not rejected:
                rejected = True
                await self._reject(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, scope: Scope, receive: Any, send: Any) -> None:
        response = problem_response(413, f"the request body is over {self.limit} bytes")
        await response(scope, receive, send)


class RequestLogMiddleware:
    """Binds `request_id` (the caller's X-Request-ID, or a new one) for every
    log line of the request, echoes it back with any headers a route added
    through `add_response_headers`, and logs one access line."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = given if given.replace("-", "").isalnum() else secrets.token_hex(8)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(scope.get("state", {}).get(EXTRA_HEADERS, []))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                )
