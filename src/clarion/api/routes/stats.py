"""Delivery and open rates, latency percentiles (secret key)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from clarion.api.deps import RuntimeDep, SecretApp
from clarion.api.errors import Problem, problem_responses
from clarion.tracking.stats import stats

router = APIRouter(tags=["analytics"], responses=problem_responses(401, 403, 422))

DEFAULT_WINDOW = timedelta(days=30)


class Latency(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class StatsRow(BaseModel):
    key: str | None
    targeted: int
    sent: int
    delivered: int
    opened: int
    failed: int
    dead: int
    skipped: int
    delivery_rate: float
    open_rate: float
    latency_ms: Latency


class Stats(BaseModel):
    rows: list[StatsRow]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/v1/stats", response_model=Stats)
async def get_stats(
    runtime: RuntimeDep,
    principal: SecretApp,
    since: Annotated[datetime | None, Query(description="default: 30 days before `until`")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
    group_by: Literal["platform", "type", "category"] = "platform",
) -> Stats:
    assert principal.app_pk is not None
    end = _utc(until) if until else datetime.now(UTC) + timedelta(seconds=1)
    start = _utc(since) if since else end - DEFAULT_WINDOW
    if start >= end:
        raise Problem(
            422, "`since` must be before `until`", errors=[{"loc": ["query", "since"], "msg": "not before until"}]
        )
    async with runtime.engine.connect() as conn:
        rows = await stats(conn, principal.app_pk, start, end, group_by)
    return Stats(rows=[StatsRow(**row) for row in rows])
