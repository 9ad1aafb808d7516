"""Fan-out: a notification's audience becomes delivery records and jobs.

One batch of users is one transaction: its deliveries, its jobs (embedded
broker) and the advanced cursor commit together, so a crash repeats no batch
and loses none. Several processes may fan out at once: a notification is
claimed with a lease kept in its cursor (`SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL), and every batch commits only while its owner still holds it.
With RabbitMQ the jobs are published after the commit; the cursor remembers
the batch as `pending` until they are confirmed, and a new owner republishes
a pending batch's queued deliveries.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clarion import constants as c
from clarion.dispatch.audience import Page, active_devices, next_page, preferences_for, preferences_of
from clarion.domain.preferences import applicable_caps
from clarion.domain.targeting import Planned, Spec, User, plan_user
from clarion.queue.base import Broker, Job
from clarion.store import notifications as records
from clarion.store.tables import apps, deliveries, notifications

log = logging.getLogger(__name__)


class LostClaim(Exception):
    """Another process took the notification over (our lease ran out) or it was canceled."""


@dataclass(slots=True)
class Claim:
    notification: sa.Row[Any]
    cursor: dict[str, Any]
    caps: dict[str, Any]


def spec_of(notification: sa.Row[Any]) -> Spec:
    request = notification.request
    base = notification.send_at or notification.created_at
    return Spec(
        notification.type, notification.category, base, int(request["ttl"]), request.get("local_time")
    )


class FanOut:
    def __init__(self, engine: AsyncEngine, broker: Broker, *, batch_size: int = c.FANOUT_USER_BATCH) -> None:
        self.engine = engine
        self.broker = broker
        self.batch_size = batch_size
        self.owner = uuid.uuid4().hex

    async def run_once(self) -> bool:
        """Fan out one claimable notification to the end. False when none is waiting."""
        claim = await self._claim()
        if claim is None:
            return False
        try:
            await self._republish_pending(claim)
            while not await self._batch(claim):
                pass
        except LostClaim:
            log.info("fan-out of %s stopped: canceled or taken over", claim.notification.id)
        return True

    async def _claim(self) -> Claim | None:
        now = time.time()
        query = (
            sa.select(notifications, apps.c.frequency_caps)
            .join(apps, apps.c.pk == notifications.c.app_pk)
            .where(
                notifications.c.status.in_([c.ACCEPTED, c.DISPATCHING]),
                notifications.c.fanout_done.is_(False),
            )
            .order_by(notifications.c.pk)
            .limit(20)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=notifications, skip_locked=True)
            for row in (await conn.execute(query)).all():
                cursor = dict(row.fanout_cursor or {})
                if cursor.get("lease", 0) > now and cursor.get("owner") != self.owner:
                    continue
                fresh = {**cursor, "owner": self.owner, "lease": now + c.FANOUT_LEASE_SECONDS}
                await conn.execute(
                    notifications.update()
                    .where(notifications.c.pk == row.pk)
                    .values(status=c.DISPATCHING, fanout_cursor=fresh)
                )
                return Claim(row, fresh, row.frequency_caps or {})
        return None

    async def _batch(self, claim: Claim) -> bool:
        """Plan and commit one page of the audience. True when the audience is done."""
        notification = claim.notification
        async with self.engine.connect() as conn:
            page = await next_page(
                conn,
                notification.app_pk,
                notification.request["audience"],
                claim.cursor.get("after"),
                self.batch_size,
            )
            planned = await self._plan(conn, claim, page)
        done = page.done
        cursor = {**claim.cursor, "after": page.after, "lease": time.time() + c.FANOUT_LEASE_SECONDS}

        async def writes(conn: AsyncConnection) -> list[Job]:
            first_pk, jobs = await _insert(conn, notification, planned)
            if not self.broker.transactional and first_pk is not None:
                cursor["pending"] = first_pk  # republished by a new owner if we die before confirms
            # With RabbitMQ the notification is done only once its last jobs are confirmed.
            await self._advance(conn, claim, cursor, done and self.broker.transactional)
            return jobs

        await self.broker.commit(self.engine, writes)
        claim.cursor = cursor
        if not self.broker.transactional:
            await self._confirmed(claim, done)
        return done

    async def _plan(self, conn: AsyncConnection, claim: Claim, page: Page) -> list[tuple[User, Planned]]:
        notification = claim.notification
        spec = spec_of(notification)
        known = [u.pk for u in page.users if u.pk is not None]
        devices = page.only_devices if page.only_devices is not None else await active_devices(conn, known)
        prefs = await preferences_of(conn, known) if known else {}
        caps = applicable_caps(claim.caps, spec.type, spec.category)
        now = datetime.now(UTC)
        capped = (
            await records.capped_users(conn, caps, known, notification.pk, now) if caps and known else set()
        )
        planned = []
        for user in page.users:
            own = devices.get(user.pk, []) if user.pk is not None else []
            verdicts = plan_user(spec, user, own, preferences_for(prefs, user), user.pk in capped, now)
            planned.extend((user, p) for p in verdicts)
        return planned

    async def _advance(self, conn: AsyncConnection, claim: Claim, cursor: dict[str, Any], done: bool) -> None:
        owner = notifications.c.fanout_cursor["owner"].as_string()
        result = await conn.execute(
            notifications.update()
            .where(
                notifications.c.pk == claim.notification.pk,
                notifications.c.status == c.DISPATCHING,
                owner == self.owner,
            )
            .values(fanout_cursor=cursor, fanout_done=done)
        )
        if result.rowcount != 1:
            raise LostClaim(claim.notification.id)

    async def _confirmed(self, claim: Claim, done: bool) -> None:
        """RabbitMQ: the batch's jobs are confirmed; clear `pending` (and finish)."""
        cursor = {k: v for k, v in claim.cursor.items() if k != "pending"}

        async with self.engine.begin() as conn:
            await self._advance(conn, claim, cursor, done)
        claim.cursor = cursor

    async def _republish_pending(self, claim: Claim) -> None:
        """A previous owner committed a batch but may not have published it."""
        if not claim.cursor.get("pending"):
            return
        notification = claim.notification
        query = (
            sa.select(deliveries.c.pk, deliveries.c.platform, deliveries.c.not_before)
            .where(
                deliveries.c.notification_pk == notification.pk,
                deliveries.c.status == c.QUEUED,
                deliveries.c.pk >= claim.cursor["pending"],
            )
            .order_by(deliveries.c.pk)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        jobs = jobs_for(
            notification.app_pk, notification.pk, ((r.pk, r.platform, r.not_before) for r in rows)
        )

        async def writes(_conn: AsyncConnection) -> list[Job]:
            return jobs

        await self.broker.commit(self.engine, writes)
        await self._confirmed(claim, False)


async def _insert(
    conn: AsyncConnection, notification: sa.Row[Any], planned: list[tuple[User, Planned]]
) -> tuple[int | None, list[Job]]:
    """Write the deliveries; (the first new pk, the jobs for the queued ones).

    Plain tuples go straight to the driver's executemany: SQLAlchemy's
    per-row parameter processing for `INSERT … RETURNING` cost more than
    SQLite's own work here (profiled: ~2/3 of fan-out). The new pks are read
    back: only the claim's holder inserts this notification's deliveries, and
    every pk drawn after `before` was read is greater than it."""
    if not planned:
        return None, []
    bind = deliveries.c.queued_at.type.bind_processor(conn.dialect)
    assert bind is not None
    queued_at = bind(datetime.now(UTC))
    rows = [_delivery_row(notification, user, p, queued_at, bind) for user, p in planned]
    before = (await conn.execute(sa.select(sa.func.max(deliveries.c.pk)))).scalar() or 0
    await conn.exec_driver_sql(_insert_sql(conn.dialect.paramstyle), rows)
    query = (
        sa.select(deliveries.c.pk, deliveries.c.platform, deliveries.c.status, deliveries.c.not_before)
        # `+ 0` keeps the planner on the pk range (this batch's rows): through the
        # (notification, status) index it would scan every earlier batch's rows too.
        .where((deliveries.c.notification_pk + 0) == notification.pk, deliveries.c.pk > before)
        .order_by(deliveries.c.pk)
    )
    created = (await conn.execute(query)).all()
    if len(created) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} deliveries, found {len(created)}")
    queued = ((r.pk, r.platform, r.not_before) for r in created if r.status == c.QUEUED)
    return created[0].pk, jobs_for(notification.app_pk, notification.pk, queued)


_INSERT_COLUMNS = (
    "id", "notification_pk", "app_pk", "user_pk", "user_id", "device_pk", "device_id",
    "platform", "status", "reason", "attempts", "not_before", "queued_at",
)


def _insert_sql(paramstyle: str) -> str:
    count = len(_INSERT_COLUMNS)
    marks = [f"${i}" for i in range(1, count + 1)] if paramstyle == "numeric_dollar" else ["?"] * count
    if paramstyle not in ("numeric_dollar", "qmark"):
        marks = ["%s"] * count
    return f"INSERT INTO deliveries ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join(marks)})"


def _delivery_row(
    notification: sa.Row[Any], user: User, planned: Planned, queued_at: Any, bind: Any
) -> tuple[Any, ...]:
    """One row in `_INSERT_COLUMNS` order, datetimes already in the driver's form."""
    device = planned.device
    queued = planned.status == c.QUEUED
    return (
        str(uuid.uuid4()), notification.pk, notification.app_pk, user.pk, user.user_id,
        device.pk if device else None, device.id if device else None, device.platform if device else None,
        planned.status, planned.reason, 0,
        bind(planned.not_before) if planned.not_before is not None else None,
        queued_at if queued else None,
    )


def jobs_for(
    app_pk: int, notification_pk: int, queued: Iterable[tuple[int, str, datetime | None]]
) -> list[Job]:
    """Pack deliveries into jobs per platform and due time (to 0.1 s), `DELIVERIES_PER_JOB[platform]` each."""
    groups: dict[tuple[str, float], list[int]] = defaultdict(list)
    for pk, platform, not_before in queued:
        due = math.ceil(not_before.timestamp() * 10) / 10 if not_before else 0.0
        groups[(platform, due)].append(pk)
    return [
        Job(app_pk, platform, notification_pk, tuple(chunk), due)
        for (platform, due), pks in groups.items()
        for chunk in _chunks(pks, c.DELIVERIES_PER_JOB[platform])
    ]


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
