"""The FastAPI application: routers, problem+json errors, an honest OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from clarion import __version__
from clarion.api.errors import PROBLEM_TYPE, ProblemBody, install_error_handlers
from clarion.api.middleware import BodyLimitMiddleware, RequestLogMiddleware
from clarion.api.ratelimit import build_limiter
from clarion.api.routes import (
    apps,
    dead_letters,
    devices,
    events,
    notifications,
    oauth,
    ops,
    preferences,
    segments,
    stats,
    topics,
    users,
)
from clarion.runtime import Runtime

ROUTERS = (
    ops, oauth, apps, users, devices, preferences, topics, segments, notifications, events, stats, dead_letters,
)


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runtime.pipeline is not None:
            await runtime.pipeline.start()
        try:
            yield
        finally:
            if runtime.pipeline is not None:
                await runtime.pipeline.stop()

    app = FastAPI(
        title="Clarion",
        version=__version__,
        description="Self-hosted push notifications for iOS (APNs), Android (FCM) and browsers (Web Push).",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    if runtime.limiter is None:
        runtime.limiter = build_limiter(runtime.settings)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with its default validation-error body replaced by the
    problem+json body this API really sends."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemBody"] = ProblemBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for defs_name, definition in components["ProblemBody"].pop("$defs", {}).items():
        components.setdefault(defs_name, definition)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem = {"$ref": "#/components/schemas/ProblemBody"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and status != "default":
                    response["content"] = _problem_content(response.get("content"), problem)
            for status, title, needs in (("400", "Bad Request", ("requestBody",)),
                                         ("422", "Unprocessable Content", ("requestBody", "parameters"))):
                if any(operation.get(part) for part in needs):
                    operation["responses"].setdefault(
                        status, {"description": title, "content": {PROBLEM_TYPE: {"schema": problem}}}
                    )
    app.openapi_schema = schema
    return schema


def _problem_content(content: dict[str, Any] | None, problem: dict[str, Any]) -> dict[str, Any]:
    # Keep a route's own non-problem error bodies (the OAuth token endpoint's RFC 6749 errors).
    if content and "application/json" in content:
        ref = content["application/json"].get("schema", {}).get("$ref", "")
        if ref and not ref.endswith(("HTTPValidationError", "ProblemBody")):
            return content
    return {PROBLEM_TYPE: {"schema": problem}}
