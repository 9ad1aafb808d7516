"""The embedded broker's delivery limit: a job that keeps failing is handed out as poison."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from clarion.queue.base import Job, Message
from clarion.queue.embedded import EmbeddedBroker
from clarion.runtime import Runtime
from clarion.store.tables import queue_jobs


async def test_a_job_claimed_past_the_limit_comes_back_as_poison(runtime: Runtime) -> None:
    """Each failed attempt costs a claim; past `claim_limit` the job is handed out marked poison
    (the worker then buries its deliveries) and the handler's commit retires it."""
    broker = EmbeddedBroker(runtime.engine, lease_seconds=5, claim_limit=2)
    job = Job(1, "ios", 2, (3, 4))

    async def publish(_conn: object) -> list[Job]:
        return [job]

    await broker.commit(runtime.engine, publish)
    seen: list[bool] = []
    stop = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append(bool(message.extra.get("poison")))
        if not message.extra.get("poison"):
            raise RuntimeError("this job kills its worker")  # the broker releases it for a later claim
        assert message.job.deliveries == job.deliveries
        await broker.commit(runtime.engine, lambda _conn: _none(), settled=[message])
        stop.set()

    consuming = asyncio.create_task(broker.consume(handler, stop))
    await asyncio.wait_for(stop.wait(), timeout=15)
    await consuming
    assert seen == [False, False, True]
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(queue_jobs))).scalar() == 0


async def _none() -> list[Job]:
    return []
