"""The worker: one job in, one provider request per delivery, statuses out.

Statuses, retry jobs and the job's acknowledgement are committed together
(see queue/base.py for how each broker makes that durable).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clarion import constants as c
from clarion import metrics
from clarion.dispatch.fanout import jobs_for, spec_of
from clarion.dispatch.payload import ContentFor, Recipient, build_push
from clarion.dispatch.providers import ProviderPool
from clarion.domain.attempts import StatusUpdate, resolve
from clarion.domain.retry import RetryPolicy
from clarion.domain.targeting import delivery_window
from clarion.providers.base import Outcome, Provider, Push, Retry
from clarion.queue.base import Broker, Job, Message
from clarion.security import SecretBox
from clarion.store.devices import deactivate_device, decrypt_device
from clarion.store.notifications import bury
from clarion.store.tables import apps, deliveries, devices, notifications, users

log = logging.getLogger(__name__)
FINAL_COUNTED = (c.SENT, c.FAILED, c.DEAD)
PROVIDER_NAMES = {"ios": "apns", "android": "fcm", "web": "webpush"}


@dataclass(slots=True)
class Batch:
    """One job's deliveries, sorted by what happens to them."""

    updates: dict[int, StatusUpdate]
    later: list[tuple[int, str, datetime]]  # not due yet: (pk, platform, due)
    to_send: list[tuple[sa.Row[Any], Push, datetime]]  # (row, push, expires)
    devices: dict[int, int]  # delivery pk -> device pk


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        broker: Broker,
        providers: ProviderPool,
        policy: RetryPolicy,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.box = box
        self.broker = broker
        self.providers = providers
        self.policy = policy
        self.rand = rand
        self._notifications: OrderedDict[int, sa.Row[Any]] = OrderedDict()
        self._app_ids: dict[int, str] = {}

    async def handle(self, message: Message) -> None:
        job = message.job
        if message.extra.get("poison"):  # the broker gave up on this job: its deliveries are dead
            await self.broker.commit(self.engine, lambda conn: bury(conn, job.deliveries), settled=[message])
            return
        now = datetime.now(UTC)
        notification = await self._notification(job.notification_pk)
        rows = await self._load(job.deliveries) if notification is not None else []
        batch = self._sort(notification, rows, now) if notification is not None else Batch({}, [], [], {})
        if batch.to_send:
            await self._attempt(job, batch, now)

        async def writes(conn: AsyncConnection) -> list[Job]:
            return await self._record(conn, job, batch)

        await self.broker.commit(self.engine, writes, settled=[message])
        if notification is not None and batch.updates:
            await self._count(job, notification, batch)

    async def _count(self, job: Job, notification: sa.Row[Any], batch: Batch) -> None:
        """Metrics after the commit: statuses reached, and accept-to-sent latency.
        Tallied first: one labelled increment per status and reason, not per delivery."""
        app_id = await self._app_id(job.app_pk)
        reached = Counter((u.status, u.reason or "") for u in batch.updates.values() if u.status in FINAL_COUNTED)
        for (status, reason), number in reached.items():
            metrics.DELIVERIES.labels(app_id, job.platform, status, reason).inc(number)
        latency = metrics.ACCEPT_TO_SENT.labels(job.platform)
        for update in batch.updates.values():
            if update.status == c.SENT and update.sent_at is not None:
                latency.observe(max(0.0, (update.sent_at - notification.created_at).total_seconds()))

    async def _app_id(self, app_pk: int) -> str:
        if app_pk not in self._app_ids:
            async with self.engine.connect() as conn:
                found = (await conn.execute(sa.select(apps.c.id).where(apps.c.pk == app_pk))).scalar()
            self._app_ids[app_pk] = str(found)
        return self._app_ids[app_pk]

    async def _notification(self, pk: int) -> sa.Row[Any] | None:
        cached = self._notifications.get(pk)
        if cached is None:
            async with self.engine.connect() as conn:
                query = sa.select(notifications).where(notifications.c.pk == pk)
                cached = (await conn.execute(query)).first()
            if cached is None:
                return None
            self._notifications[pk] = cached
            if len(self._notifications) > 1000:
                self._notifications.popitem(last=False)
        return cached

    async def _load(self, pks: Sequence[int]) -> list[sa.Row[Any]]:
        """The job's deliveries that are still queued (a repeat finds fewer)."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(_LOAD, {"pks": list(pks)})).all())

    def _sort(self, notification: sa.Row[Any], rows: list[sa.Row[Any]], now: datetime) -> Batch:
        spec, content_for = spec_of(notification), ContentFor(notification.request)
        batch = Batch({}, [], [], {})
        for row in rows:
            _due, expires = delivery_window(spec, row.user_tz, row.device_tz)
            verdict = self._precheck(row, now, expires)
            if verdict is not None:
                batch.updates[row.pk] = verdict
            elif (
                row.not_before is not None
                and row.not_before.timestamp() > now.timestamp() + c.DUE_SLACK_SECONDS
            ):
                batch.later.append((row.pk, row.platform, row.not_before))
            else:
                self._prepare(notification, row, now, expires, batch, content_for)
        return batch

    def _precheck(self, row: sa.Row[Any], now: datetime, expires: datetime) -> StatusUpdate | None:
        """A final status reached without asking the provider, if any."""
        if row.device_pk is None:
            return StatusUpdate(c.FAILED, row.attempts, reason=c.DEVICE_DELETED)
        if not row.active:
            return StatusUpdate(c.FAILED, row.attempts, reason=c.DEVICE_INACTIVE)
        if now >= expires:
            status = c.SKIPPED if row.attempts == 0 else c.FAILED
            return StatusUpdate(status, row.attempts, reason=c.EXPIRED, error=None)
        return None

    def _prepare(
        self, notification: sa.Row[Any], row: sa.Row[Any], now: datetime, expires: datetime, batch: Batch,
        content_for: ContentFor,
    ) -> None:
        try:
            token, keys = decrypt_device(self.box, row.platform, row.token_enc)
            recipient = Recipient(
                row.id,
                row.platform,
                token,
                keys,
                row.user_id,
                row.attributes or {},
                row.device_locale or row.user_locale,
            )
            push = build_push(notification.request, notification.type, notification.category, recipient,
                              content_for(recipient), expires, now)
        except Exception as exc:  # noqa: BLE001 - one bad device or template must not sink the batch
            log.warning("delivery %s cannot be built: %s", row.id, type(exc).__name__)
            batch.updates[row.pk] = StatusUpdate(
                c.FAILED, row.attempts, reason="unbuildable", error=str(exc)[:500]
            )
            return
        batch.to_send.append((row, push, expires))
        batch.devices[row.pk] = row.device_pk

    async def _attempt(self, job: Job, batch: Batch, now: datetime) -> None:
        provider = await self.providers.get(job.app_pk, job.platform)
        if provider is None:
            for row, _push, _expires in batch.to_send:
                batch.updates[row.pk] = StatusUpdate(c.FAILED, row.attempts, reason=c.NO_CREDENTIALS)
            return
        in_flight = metrics.IN_FLIGHT.labels(job.platform)
        in_flight.inc(len(batch.to_send))
        started = time.perf_counter()
        try:
            outcomes = await _send(provider, [push for _row, push, _exp in batch.to_send])
        finally:
            in_flight.dec(len(batch.to_send))
        metrics.PROVIDER_REQUEST.labels(job.platform).observe(time.perf_counter() - started)
        answered = datetime.now(UTC)
        for (row, _push, expires), outcome in zip(batch.to_send, outcomes, strict=True):
            batch.updates[row.pk] = resolve(outcome, row.attempts, self.policy, answered, expires, self.rand)

    async def _record(self, conn: AsyncConnection, job: Job, batch: Batch) -> list[Job]:
        await write_statuses(conn, batch.updates)
        for pk, update in batch.updates.items():
            if update.deactivate_device and pk in batch.devices:
                await deactivate_device(conn, batch.devices[pk], update.deactivate_device)
        problems = {u.credentials_problem for u in batch.updates.values() if u.credentials_problem}
        if problems:
            await _flag_credentials(conn, job.app_pk, PROVIDER_NAMES[job.platform], problems.pop())
        retries = [
            (pk, job.platform, u.not_before) for pk, u in batch.updates.items() if u.status == c.QUEUED
        ]
        return jobs_for(job.app_pk, job.notification_pk, [*retries, *batch.later])


async def _send(provider: Provider, pushes: list[Push]) -> list[Outcome]:
    try:
        outcomes = await provider.send(pushes)
    except Exception as exc:
        log.exception("provider %s raised", getattr(provider, "platform", "?"))
        return [Retry("provider_error", str(exc)[:500]) for _ in pushes]
    if len(outcomes) != len(pushes):
        return [Retry("provider_error", "wrong number of outcomes") for _ in pushes]
    return list(outcomes)


async def write_statuses(conn: AsyncConnection, updates: dict[int, StatusUpdate]) -> None:
    """`sent` may overwrite a `canceled` that raced the provider's answer (it
    was sent); the rest only a `queued`. Updates with the same values (a
    batch's `sent`s share their answer time) go as one `UPDATE … WHERE pk IN`;
    the rest (retries, each with its own jittered time) as one executemany."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for pk, update in updates.items():
        groups[_values(update)].append(pk)
    singles: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for values, pks in groups.items():
        named, sent = dict(zip(_PARAM_NAMES, values, strict=True)), values[0] == c.SENT
        if len(pks) == 1:
            singles[sent].append({"b_pk": pks[0], **named})
        else:
            await conn.execute(_GROUP_UPDATE[sent], {"pks": pks, **named})
    for sent, params in singles.items():
        if params:
            await conn.execute(_ONE_UPDATE[sent], params)


_PARAM_NAMES = ("b_status", "b_attempts", "b_reason", "b_error", "b_not_before", "b_sent_at")
_SET = {name[2:]: sa.bindparam(name) for name in _PARAM_NAMES}
# Literal IN for the status: an expanding parameter cannot go through executemany.
_ALLOWED = {
    sent: sa.or_(*(deliveries.c.status == sa.literal_column(f"'{s}'") for s in allowed))
    for sent, allowed in ((True, (c.QUEUED, c.CANCELED)), (False, (c.QUEUED,)))
}
_ONE_UPDATE = {
    sent: deliveries.update().where(deliveries.c.pk == sa.bindparam("b_pk"), allowed).values(**_SET)
    for sent, allowed in _ALLOWED.items()
}
_GROUP_UPDATE = {
    sent: deliveries.update()
    .where(deliveries.c.pk.in_(sa.bindparam("pks", expanding=True)), allowed)
    .values(**_SET)
    for sent, allowed in _ALLOWED.items()
}


def _values(update: StatusUpdate) -> tuple[Any, ...]:
    """What a status update writes, in `_PARAM_NAMES` order."""
    return (
        update.status,
        update.attempts,
        update.reason[:64] if update.reason else None,
        update.error[:1000] if update.error else None,
        update.not_before,
        update.sent_at,
    )


# Built once: a statement made per call pays SQLAlchemy's cache-key walk every time.
_LOAD = (
    sa.select(
        deliveries.c.pk,
        deliveries.c.id,
        deliveries.c.attempts,
        deliveries.c.not_before,
        deliveries.c.device_pk,
        deliveries.c.platform,
        deliveries.c.user_id,
        devices.c.token_enc,
        devices.c.active,
        devices.c.locale.label("device_locale"),
        devices.c.timezone.label("device_tz"),
        users.c.attributes,
        users.c.locale.label("user_locale"),
        users.c.timezone.label("user_tz"),
    )
    .select_from(
        deliveries.outerjoin(devices, devices.c.pk == deliveries.c.device_pk).outerjoin(
            users, users.c.pk == deliveries.c.user_pk
        )
    )
    .where(deliveries.c.pk.in_(sa.bindparam("pks", expanding=True)), deliveries.c.status == c.QUEUED)
)


async def _flag_credentials(conn: AsyncConnection, app_pk: int, provider: str, reason: str) -> None:
    current = (await conn.execute(sa.select(apps.c.credential_problems).where(apps.c.pk == app_pk))).scalar()
    problems = {**(current or {}), provider: reason}
    await conn.execute(apps.update().where(apps.c.pk == app_pk).values(credential_problems=problems))
