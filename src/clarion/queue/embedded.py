"""The default broker: jobs live in the database (`queue_jobs`).

A worker claims a job by writing a lease; the commit that records the
statuses of its deliveries also deletes it. A SIGKILL at any moment leaves
either the job (its lease runs out and it is claimed again) or its statuses
and no job: nothing is lost, and at most one batch is repeated. A job claimed
more than `claim_limit` times is handed out marked poison, and the worker
buries its deliveries as `dead` (as RabbitMQ's delivery limit does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clarion import constants as c
from clarion.queue.base import Handler, Job, Message, Writes
from clarion.store.tables import queue_jobs

log = logging.getLogger(__name__)
CLAIM_WINDOW = 200


def queue_name(job: Job) -> str:
    """One queue per provider instance (platform and app), so limits apply per provider."""
    return f"{job.platform}.{job.app_pk}"


class EmbeddedBroker:
    transactional = True

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lease_seconds: float = c.EMBEDDED_LEASE_SECONDS,
        platform_limit: int = c.PLATFORM_CONCURRENCY,
        provider_limit: int = c.PROVIDER_CONCURRENCY,
        claim_limit: int = c.EMBEDDED_CLAIM_LIMIT,
    ) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.claim_limit = claim_limit
        self.platform_limit = platform_limit
        self.provider_limit = provider_limit
        self._wake = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(self, engine: AsyncEngine, writes: Writes, settled: Sequence[Message] = ()) -> None:
        async with engine.begin() as conn:
            jobs = await writes(conn)
            if jobs:
                await conn.execute(queue_jobs.insert(), [_row(job) for job in jobs])
            if settled:
                await conn.execute(
                    queue_jobs.delete().where(queue_jobs.c.pk.in_([m.handle for m in settled]))
                )
        if jobs:
            self._wake.set()

    async def purge(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(queue_jobs.delete())

    async def consume(self, handler: Handler, stop: asyncio.Event) -> None:
        running: dict[int, tuple[str, asyncio.Task[None]]] = {}
        renewer = asyncio.create_task(self._renew_leases(running, stop))
        try:
            while not stop.is_set():
                for message in await self._claim(running):
                    task = asyncio.create_task(self._run(handler, message))
                    running[message.handle] = (message.extra["queue"], task)
                    task.add_done_callback(lambda _t, pk=message.handle: self._finished(running, pk))
                await self._idle(stop)
        finally:
            renewer.cancel()
            await _drain(running)

    def _finished(self, running: dict[int, tuple[str, asyncio.Task[None]]], pk: int) -> None:
        running.pop(pk, None)
        self._wake.set()

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, timeout=c.EMBEDDED_POLL_SECONDS * 4, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _run(self, handler: Handler, message: Message) -> None:
        try:
            await handler(message)
        except Exception:
            # Leave the job for a later claim rather than drop it.
            log.exception("job %s failed; it will be retried", message.handle)
            await self._release(message.handle, delay=1.0)

    async def _claim(self, running: dict[int, tuple[str, asyncio.Task[None]]]) -> list[Message]:
        per_queue = Counter(queue for queue, _ in running.values())
        per_platform = Counter(queue.split(".")[0] for queue, _ in running.values())
        busy = [q for q, n in per_queue.items() if n >= self.provider_limit]
        now = time.time()
        candidates = await self._ready(now, busy, list(running))
        chosen: dict[int, tuple[str, float]] = {}
        for pk, queue, available_at in candidates:
            platform = queue.split(".")[0]
            if per_queue[queue] >= self.provider_limit or per_platform[platform] >= self.platform_limit:
                continue
            per_queue[queue] += 1
            per_platform[platform] += 1
            chosen[pk] = (queue, available_at)
        return await self._lease(chosen, now)

    async def _ready(self, now: float, busy: list[str], held: list[int]) -> list[sa.Row]:  # type: ignore[type-arg]
        # Bodies are read only for the jobs won (in _lease): a claim runs after every job, over many candidates.
        query = (
            sa.select(queue_jobs.c.pk, queue_jobs.c.queue, queue_jobs.c.available_at)
            .where(queue_jobs.c.available_at <= now, _unleased(now))
            .order_by(queue_jobs.c.available_at, queue_jobs.c.pk)
            .limit(CLAIM_WINDOW)
        )
        if busy:
            query = query.where(queue_jobs.c.queue.not_in(busy))
        if held:
            query = query.where(queue_jobs.c.pk.not_in(held))
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))

    async def _lease(self, chosen: dict[int, tuple[str, float]], now: float) -> list[Message]:
        """Leases what is still unleased of `chosen` ({pk: (queue, available_at)}); those jobs, decoded."""
        if not chosen:
            return []
        statement = (
            queue_jobs.update()
            .where(queue_jobs.c.pk.in_(list(chosen)), _unleased(now))
            .values(lease_until=now + self.lease_seconds, claims=queue_jobs.c.claims + 1)
            .returning(queue_jobs.c.pk, queue_jobs.c.body, queue_jobs.c.claims)
        )
        async with self.engine.begin() as conn:
            won = {pk: (body, claims) for pk, body, claims in await conn.execute(statement)}
        messages = []
        for pk, (queue, available_at) in chosen.items():  # in the order chosen
            if pk in won:
                body, claims = won[pk]
                extra = {"queue": queue, "poison": True} if claims > self.claim_limit else {"queue": queue}
                messages.append(Message(Job.decode(body, available_at), pk, extra))
        return messages

    async def _release(self, pk: int, delay: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                queue_jobs.update().where(queue_jobs.c.pk == pk).values(lease_until=time.time() + delay)
            )

    async def _renew_leases(
        self, running: dict[int, tuple[str, asyncio.Task[None]]], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.lease_seconds / 3)
            held = list(running)
            if held:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        queue_jobs.update()
                        .where(queue_jobs.c.pk.in_(held))
                        .values(lease_until=time.time() + self.lease_seconds)
                    )


def _unleased(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(queue_jobs.c.lease_until.is_(None), queue_jobs.c.lease_until < now)


def _row(job: Job) -> dict[str, object]:
    return {
        "queue": queue_name(job),
        "body": job.encode(),
        "available_at": job.available_at,
        "lease_until": None,
    }


async def _drain(running: dict[int, tuple[str, asyncio.Task[None]]], grace: float = 10.0) -> None:
    """Let in-flight jobs finish their commit; what does not finish in time
    is cancelled and its lease runs out."""
    tasks = [task for _, task in running.values()]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
