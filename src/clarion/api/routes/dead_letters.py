"""Dead letters (secret key): deliveries whose retries ran out; replay them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clarion.api.deps import RuntimeDep, SecretApp
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import Strict
from clarion.api.pagination import CursorQuery, LimitQuery, decode_cursor, next_cursor
from clarion.dispatch.replay import replay_dead
from clarion.dispatch.service import publisher
from clarion.store import notifications as records

router = APIRouter(tags=["dead letters"], responses=problem_responses(401, 403, 422))


class DeadLetter(BaseModel):
    id: str
    notification_id: str
    device_id: str | None
    user_id: str | None
    platform: str | None
    reason: str | None
    error: str | None
    attempts: int
    queued_at: datetime | None


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None


class ReplayIn(Strict):
    ids: (
        Annotated[list[Annotated[str, Field(max_length=36)]], Field(min_length=1, max_length=10_000)] | None
    ) = None
    notification_id: Annotated[str, Field(max_length=40)] | None = None


class Replayed(BaseModel):
    replayed: int


@router.get("/v1/dead-letters", response_model=DeadLetterPage)
async def list_dead_letters(
    runtime: RuntimeDep, principal: SecretApp, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> DeadLetterPage:
    assert principal.app_pk is not None
    async with runtime.engine.connect() as conn:
        rows = await records.list_dead(conn, principal.app_pk, decode_cursor(cursor), limit)
    items = [DeadLetter.model_validate(r, from_attributes=True) for r in rows]
    return DeadLetterPage(items=items, next_cursor=next_cursor([r.pk for r in rows], limit))


@router.post(
    "/v1/dead-letters/replay", status_code=202, response_model=Replayed, responses=problem_responses(404)
)
async def replay(body: ReplayIn, runtime: RuntimeDep, principal: SecretApp) -> JSONResponse:
    assert principal.app_pk is not None
    notification_pk = None
    if body.notification_id is not None:
        async with runtime.engine.connect() as conn:
            row = await records.find_notification(conn, principal.app_pk, body.notification_id)
        if row is None:
            raise Problem(404, f"no notification {body.notification_id}")
        notification_pk = row.pk
    broker = await publisher(runtime)
    count = await replay_dead(runtime.engine, broker, principal.app_pk, body.ids, notification_pk)
    return JSONResponse({"replayed": count}, status_code=202)
