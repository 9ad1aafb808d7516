"""Keyset pagination: `?limit=&cursor=` → `{items, next_cursor}`."""

from __future__ import annotations

import base64
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from clarion.api.errors import Problem

T = TypeVar("T")

LimitQuery = Annotated[int, Query(ge=1, le=1000)]
CursorQuery = Annotated[str | None, Query(max_length=200)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The pk to continue after; a cursor we did not make is a 422."""
    if not cursor:
        return None
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError as exc:
        raise Problem(
            422, "cursor is not one this API returned", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from exc


def next_cursor(pks: list[int], limit: int) -> str | None:
    return encode_cursor(pks[-1]) if len(pks) == limit else None
