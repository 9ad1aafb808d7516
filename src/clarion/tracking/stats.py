"""Delivery analytics over notifications created in [since, until).

Unlike a notification's counts, stats count each stage reached: `sent`
includes delivered and opened ones, `delivered` includes opened."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion import constants as c
from clarion.store.tables import deliveries, notifications

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def group_column(group_by: str) -> sa.ColumnElement[Any]:
    return {"platform": deliveries.c.platform, "type": notifications.c.type, "category": notifications.c.category}[
        group_by
    ]


def latency_ms(dialect: str) -> sa.ColumnElement[Any]:
    """Accept → provider-accepted, in milliseconds."""
    if dialect == "sqlite":
        days = sa.func.julianday(deliveries.c.sent_at) - sa.func.julianday(notifications.c.created_at)
        return days * 86_400_000.0
    return sa.extract("epoch", deliveries.c.sent_at - notifications.c.created_at) * 1000.0


def _count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.count(sa.case((condition, 1)))


async def stats(
    conn: AsyncConnection, app_pk: int, since: datetime, until: datetime, group_by: str
) -> list[dict[str, Any]]:
    key = group_column(group_by).label("key")
    scope = sa.and_(
        notifications.c.app_pk == app_pk, notifications.c.created_at >= since, notifications.c.created_at < until
    )
    joined = deliveries.join(notifications, notifications.c.pk == deliveries.c.notification_pk)
    query = (
        sa.select(
            key,
            sa.func.count().label("targeted"),
            _count_where(deliveries.c.sent_at.is_not(None)).label("sent"),
            _count_where(deliveries.c.delivered_at.is_not(None)).label("delivered"),
            _count_where(deliveries.c.opened_at.is_not(None)).label("opened"),
            _count_where(deliveries.c.status == c.FAILED).label("failed"),
            _count_where(deliveries.c.status == c.DEAD).label("dead"),
            _count_where(deliveries.c.status == c.SKIPPED).label("skipped"),
        )
        .select_from(joined)
        .where(scope)
        .group_by(key)
        .order_by(key)
    )
    rows = []
    for row in (await conn.execute(query)).all():
        record = dict(row._mapping)
        record["delivery_rate"] = _ratio(row.delivered, row.sent)
        record["open_rate"] = _ratio(row.opened, row.sent)
        group = sa.and_(scope, _same_group(group_column(group_by), row.key))
        record["latency_ms"] = await _percentiles(conn, joined, group, row.sent)
        rows.append(record)
    return rows


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _same_group(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


async def _percentiles(
    conn: AsyncConnection, joined: Any, group: sa.ColumnElement[bool], sent: int
) -> dict[str, float | None]:
    """Exact nearest-rank percentiles, computed in the database on both backends."""
    if sent == 0:
        return dict.fromkeys(PERCENTILES)
    latency = latency_ms(conn.dialect.name).label("latency")
    ordered = (
        sa.select(latency).select_from(joined).where(group, deliveries.c.sent_at.is_not(None)).order_by(latency)
    )
    result: dict[str, float | None] = {}
    for name, p in PERCENTILES.items():
        rank = max(1, math.ceil(p * sent))
        value = (await conn.execute(ordered.offset(rank - 1).limit(1))).scalar()
        result[name] = round(float(value), 3) if value is not None else None
    return result
