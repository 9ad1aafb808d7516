"""Dead-letter replay: dead deliveries are queued again, attempts reset."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clarion import constants as c
from clarion.dispatch.fanout import jobs_for
from clarion.queue.base import Broker, Job
from clarion.store import notifications as records
from clarion.store.tables import deliveries, notifications

REPLAY_BATCH = 1000


async def replay_dead(
    engine: AsyncEngine, broker: Broker, app_pk: int, ids: Sequence[str] | None, notification_pk: int | None
) -> int:
    """Queue the named dead deliveries again, in batches; returns how many."""
    total = 0
    while True:
        replayed = 0

        async def writes(conn: AsyncConnection) -> list[Job]:
            nonlocal replayed
            query = records.dead_selection(app_pk, ids, notification_pk).limit(REPLAY_BATCH)
            rows = (await conn.execute(query)).all()
            replayed = len(rows)
            return await _requeue(conn, rows)

        await broker.commit(engine, writes)
        total += replayed
        if replayed < REPLAY_BATCH:
            return total


async def _requeue(conn: AsyncConnection, rows: Sequence[sa.Row]) -> list[Job]:  # type: ignore[type-arg]
    if not rows:
        return []
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.pk.in_([r.pk for r in rows]), deliveries.c.status == c.DEAD)
        .values(status=c.QUEUED, attempts=0, reason=None, not_before=None)
    )
    touched = {r.notification_pk for r in rows}
    await conn.execute(
        notifications.update()
        .where(notifications.c.pk.in_(touched), notifications.c.status == c.COMPLETED)
        .values(status=c.DISPATCHING, completed_at=None)
    )
    jobs = []
    for notification_pk in touched:
        app_pk = next(r.app_pk for r in rows if r.notification_pk == notification_pk)
        own = [(r.pk, r.platform, None) for r in rows if r.notification_pk == notification_pk]
        jobs += jobs_for(app_pk, notification_pk, own)
    return jobs
