"""Receipts from clients (publishable key): delivered / opened / dismissed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from clarion.api.deps import AnyAppKey, RuntimeDep
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import Strict
from clarion.tracking import receipts

router = APIRouter(tags=["events"], responses=problem_responses(401, 403, 404, 409, 422))

# Client clocks drift; a receipt from slightly ahead is taken as "now".
CLOCK_SKEW = timedelta(minutes=5)


class EventIn(Strict):
    delivery_id: Annotated[str, Field(min_length=1, max_length=64)]
    event: Literal["delivered", "opened", "dismissed"]
    at: datetime | None = None


class EventAccepted(BaseModel):
    delivery_id: str
    event: str


def _event_time(at: datetime | None) -> datetime:
    now = datetime.now(UTC)
    if at is None:
        return now
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at > now + CLOCK_SKEW:
        raise Problem(422, "`at` lies in the future", errors=[{"loc": ["body", "at"], "msg": "in the future"}])
    return min(at, now)


@router.post("/v1/events", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, runtime: RuntimeDep, principal: AnyAppKey) -> EventAccepted:
    """Record a receipt; repeats are idempotent (each stage is stamped once)."""
    assert principal.app_pk is not None
    at = _event_time(body.at)
    try:
        async with runtime.engine.begin() as conn:
            await receipts.record_event(conn, principal.app_pk, body.delivery_id, body.event, at)
    except receipts.NotFound as exc:
        raise Problem(404, f"no delivery {body.delivery_id}") from exc
    except receipts.NeverSent as exc:
        raise Problem(409, f"delivery {body.delivery_id} was never sent (skipped or canceled)") from exc
    return EventAccepted(delivery_id=body.delivery_id, event=body.event)
