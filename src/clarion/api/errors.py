"""problem+json (RFC 9457) for every error the API sends."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE = "application/problem+json"


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ProblemBody(BaseModel):
    """The error body every non-2xx response carries."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ErrorItem] | None = None


class Problem(Exception):
    """Raise anywhere in a request to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def validation_errors(exc: RequestValidationError) -> tuple[int, list[dict[str, Any]]]:
    """A body that is not JSON is 400; anything else that fails the schema is 422."""
    items = []
    status = 422
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            status = 400
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        items.append({"loc": loc, "msg": str(error.get("msg", "invalid"))})
    return status, items


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, items = validation_errors(exc)
        detail = "the request body is not valid JSON" if status == 400 else "the request does not match the schema"
        return problem_response(status, detail, items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, _exc: Exception) -> JSONResponse:
        return problem_response(500, "an internal error occurred; it has been logged")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json bodies."""
    return {
        status: {
            "model": ProblemBody,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
        for status in statuses
    }
