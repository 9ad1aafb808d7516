"""Notifications and their deliveries: records, counts, cancel, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion import constants as c
from clarion.domain.counts import counts_from_groups
from clarion.domain.preferences import Cap
from clarion.store.tables import deliveries, notifications

# Why a delivery is `dead` when the queue, not the provider, gave up on it.
GAVE_UP = "delivery_limit"
# Statuses that count against a frequency cap: the user got it or will.
CAP_COUNTED = (c.QUEUED, c.SENT, c.DELIVERED, c.OPENED)


def now() -> datetime:
    return datetime.now(UTC)


async def insert_notification(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(notifications.insert().values(**values))
    return int(result.inserted_primary_key[0])


async def find_notification(conn: AsyncConnection, app_pk: int, notification_id: str) -> sa.Row[Any] | None:
    query = sa.select(notifications).where(
        notifications.c.app_pk == app_pk, notifications.c.id == notification_id
    )
    return (await conn.execute(query)).first()


async def list_notifications(
    conn: AsyncConnection, app_pk: int, before: int | None, limit: int
) -> list[sa.Row[Any]]:
    """Newest first (keyset on pk, descending)."""
    query = sa.select(notifications).where(notifications.c.app_pk == app_pk)
    if before is not None:
        query = query.where(notifications.c.pk < before)
    return list((await conn.execute(query.order_by(notifications.c.pk.desc()).limit(limit))).all())


async def counts(conn: AsyncConnection, notification_pk: int) -> dict[str, int]:
    """Every delivery once, under its current status: they sum to `targeted`."""
    query = (
        sa.select(deliveries.c.status, sa.func.count())
        .where(deliveries.c.notification_pk == notification_pk)
        .group_by(deliveries.c.status)
    )
    return counts_from_groups((await conn.execute(query)).all())


async def list_deliveries(
    conn: AsyncConnection, notification_pk: int, status: str | None, after: int | None, limit: int
) -> list[sa.Row[Any]]:
    query = sa.select(deliveries).where(deliveries.c.notification_pk == notification_pk)
    if status:
        query = query.where(deliveries.c.status == status)
    if after is not None:
        query = query.where(deliveries.c.pk > after)
    return list((await conn.execute(query.order_by(deliveries.c.pk).limit(limit))).all())


async def cancel(conn: AsyncConnection, notification_pk: int) -> None:
    """Stop fan-out and turn every undelivered (still queued) delivery `canceled`."""
    stamp = now()
    await conn.execute(
        notifications.update()
        .where(notifications.c.pk == notification_pk, notifications.c.status.not_in([c.COMPLETED]))
        .values(status=c.NOTIFICATION_CANCELED, completed_at=stamp)
    )
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.notification_pk == notification_pk, deliveries.c.status == c.QUEUED)
        .values(status=c.CANCELED, reason=c.CANCELED_REASON)
    )


async def list_dead(conn: AsyncConnection, app_pk: int, after: int | None, limit: int) -> list[sa.Row[Any]]:
    query = (
        sa.select(deliveries, notifications.c.id.label("notification_id"))
        .join(notifications, notifications.c.pk == deliveries.c.notification_pk)
        .where(deliveries.c.app_pk == app_pk, deliveries.c.status == c.DEAD)
    )
    if after is not None:
        query = query.where(deliveries.c.pk > after)
    return list((await conn.execute(query.order_by(deliveries.c.pk).limit(limit))).all())


async def bury(conn: AsyncConnection, delivery_pks: Sequence[int]) -> list[Any]:
    """The queue gave up on a job (RabbitMQ's delivery limit: it kept killing
    its workers): its still-queued deliveries become `dead`, listed and
    replayable like any dead letter, rather than waiting forever. Returns the
    jobs to publish (none)."""
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.pk.in_(list(delivery_pks)), deliveries.c.status == c.QUEUED)
        .values(status=c.DEAD, reason=GAVE_UP, error="the queue's delivery limit was reached")
    )
    return []


def dead_selection(app_pk: int, ids: Sequence[str] | None, notification_pk: int | None) -> sa.Select[Any]:
    """The dead deliveries a replay request names (all of the app's when it names none)."""
    query = sa.select(
        deliveries.c.pk, deliveries.c.notification_pk, deliveries.c.platform, deliveries.c.app_pk
    ).where(deliveries.c.app_pk == app_pk, deliveries.c.status == c.DEAD)
    if ids:
        query = query.where(deliveries.c.id.in_(list(ids)))
    if notification_pk is not None:
        query = query.where(deliveries.c.notification_pk == notification_pk)
    return query.order_by(deliveries.c.pk)


async def capped_users(
    conn: AsyncConnection, caps: Sequence[Cap], user_pks: Sequence[int], notification_pk: int, at: datetime
) -> set[int]:
    """Users who already got `max` notifications a cap names within its window."""
    capped: set[int] = set()
    for cap in caps:
        column = notifications.c.type if cap.field == "type" else notifications.c.category
        query = (
            sa.select(deliveries.c.user_pk, sa.func.count(sa.distinct(deliveries.c.notification_pk)))
            .join(notifications, notifications.c.pk == deliveries.c.notification_pk)
            .where(
                deliveries.c.user_pk.in_(list(user_pks)),
                deliveries.c.status.in_(CAP_COUNTED),
                column == cap.value,
                notifications.c.created_at >= at - timedelta(seconds=cap.per_seconds),
                notifications.c.pk != notification_pk,
            )
            .group_by(deliveries.c.user_pk)
        )
        capped |= {pk for pk, number in await conn.execute(query) if number >= cap.max}
    return capped


async def complete_finished(conn: AsyncConnection) -> int:
    """Mark `completed` every dispatching notification whose fan-out is done
    and which has no queued delivery left. Returns how many."""
    still_queued = sa.exists().where(
        deliveries.c.notification_pk == notifications.c.pk, deliveries.c.status == c.QUEUED
    )
    result = await conn.execute(
        notifications.update()
        .where(notifications.c.status == c.DISPATCHING, notifications.c.fanout_done.is_(True), ~still_queued)
        .values(status=c.COMPLETED, completed_at=now())
    )
    return int(result.rowcount or 0)


async def release_scheduled(conn: AsyncConnection, at: datetime) -> int:
    """`scheduled` notifications whose send_at has come become `accepted` (fan-out takes them)."""
    result = await conn.execute(
        notifications.update()
        .where(notifications.c.status == c.SCHEDULED, notifications.c.send_at <= at)
        .values(status=c.ACCEPTED)
    )
    return int(result.rowcount or 0)
