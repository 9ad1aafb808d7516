"""RabbitMQ trouble: the broker stopped and started again in the middle of
a campaign (the worker reconnects through aio-pika's robust connection,
nothing is lost, the counts add up; the broker is started again whatever
happens, so a failure here does not leave the machine without RabbitMQ),
and a job the work queue gives up on (its delivery limit) becoming dead
letters rather than deliveries queued forever."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
import sqlalchemy as sa

from clarion import constants as c
from clarion.providers.base import Retry, Sent
from clarion.queue.base import Job
from clarion.queue.rabbitmq import DELIVERY_LIMIT, RabbitBroker
from clarion.store.tables import deliveries as delivery_table
from tests.pipeline.conftest import add_device, deliveries, wait_done
from tests.pipeline.scripted import ScriptedFactory
from tests.pipeline.test_crash import (
    DEVICES,
    check,
    create_app,
    fake_providers,
    outcome_of,
    post_campaign,
    scaled_env,
    seed_devices,
    settings_for,
    wait_completed,
)
from tests.pipeline.test_rabbitmq import broker, pipeline, policy, runtime  # noqa: F401 - fixtures
from tests.rabbitmq import rabbitmqctl
from tests.server import running_clarion

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

STOP_AFTER = 3_000  # pushes accepted before the broker goes away
DOWN_SECONDS = 3.0


@contextlib.contextmanager
def broker_stopped() -> Iterator[None]:
    """`rabbitmqctl stop_app` now, `start_app` on leaving (also on failure)."""
    rabbitmqctl("stop_app")
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")


def wait_accepted(fakes: object, at: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (accepted := fakes.accepted()) < at:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"only {accepted} pushes after {timeout} s"
        time.sleep(0.02)
    return accepted


@pytest.mark.slow
def test_broker_restarted_mid_campaign(tmp_path: Path) -> None:
    """Stop RabbitMQ after a few thousand pushes, start it a few seconds
    later: the same worker finishes the campaign, 0 lost, counts add up."""
    with fake_providers() as fakes, scaled_env(fakes) as env:
        settings = settings_for(tmp_path, env["CLARION_DATABASE_URL"])
        with running_clarion("api", tmp_path, **env) as api:
            app_id, auth = create_app(api.url, fakes)
            asyncio.run(seed_devices(settings, app_id, DEVICES))
            with running_clarion("worker", tmp_path / "worker", **env) as worker:
                started = time.monotonic()
                notification_id = post_campaign(api.url, auth)
                accepted = wait_accepted(fakes, STOP_AFTER)
                with broker_stopped():
                    time.sleep(DOWN_SECONDS)
                    during = fakes.accepted()
                view = wait_completed(api.url, auth, notification_id)
                assert worker.process.poll() is None, "the worker died instead of reconnecting"
            seconds = time.monotonic() - started
        print(f"\n[rabbitmq down] {fakes.accepted() - during} pushes after the restart")
        check(view, asyncio.run(outcome_of(settings, notification_id, fakes)), "rabbitmq restart", accepted, seconds)


# -- a job past the work queue's delivery limit -------------------------------------------------


@pytest.fixture
async def idle_broker(amqp_url: str) -> AsyncIterator[RabbitBroker]:
    """A declared topology nobody consumes from."""
    rabbit = RabbitBroker(amqp_url, prefix=f"t{secrets.token_hex(4)}.")
    await rabbit.start()
    yield rabbit
    await rabbit.delete_all()
    await rabbit.close()


async def test_delivery_limit_routes_to_the_dead_queue(idle_broker: RabbitBroker) -> None:
    """A message returned more than DELIVERY_LIMIT times (workers dying with
    it) leaves the work queue for the dead-letter queue."""
    job = Job(1, "android", 2, (3, 4))
    await idle_broker.publish([job])
    channel = idle_broker._channel
    assert channel is not None
    work = await channel.get_queue(idle_broker.name(c.WORK_QUEUE, platform="android"), ensure=False)
    dead = await channel.get_queue(idle_broker.name(c.DEAD_LETTER_QUEUE), ensure=False)
    for _ in range(DELIVERY_LIMIT + 1):
        message = await _get(work)
        await message.nack(requeue=True)
    buried = await _get(dead)
    assert Job.decode(buried.body) == job
    assert await work.get(fail=False) is None
    await buried.ack()


async def _get(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    deadline = time.monotonic() + 5
    while (message := await queue.get(fail=False)) is None:
        assert time.monotonic() < deadline, f"nothing in {queue.name}"
        await asyncio.sleep(0.05)
    return message


class TestDeadLetteredJob:
    @pytest.fixture
    def factory(self) -> ScriptedFactory:
        return ScriptedFactory()

    async def test_dead_lettered_job_becomes_dead_letters(self, api, keys, factory, broker, runtime) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
        """A job in the dead-letter queue: its queued deliveries become `dead`
        (reason `delivery_limit`), the notification completes, replay sends them."""
        auth = await keys()
        for n in range(3):
            await add_device(api, auth, f"u{n}")
        factory.providers["android"].answer = lambda _push: Retry("UNAVAILABLE", "503", after=3600)
        body = {"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}
        response = await api.post("/v1/notifications", json=body, headers=auth)
        notification_id = response.json()["id"]
        rows = await _wait_attempted(api, auth, notification_id)
        columns = (delivery_table.c.pk, delivery_table.c.app_pk, delivery_table.c.notification_pk)
        query = sa.select(*columns).where(delivery_table.c.id.in_([r["id"] for r in rows]))
        async with runtime.engine.connect() as conn:
            found = (await conn.execute(query)).all()
        job = Job(found[0].app_pk, "android", found[0].notification_pk, tuple(r.pk for r in found))
        # What RabbitMQ does with a message past the work queue's delivery limit:
        dlx = await broker._channel.get_exchange(broker.name(c.DEAD_LETTER_EXCHANGE), ensure=False)
        persistent = aio_pika.DeliveryMode.PERSISTENT
        await dlx.publish(aio_pika.Message(job.encode(), delivery_mode=persistent), routing_key="")
        view = await wait_done(api, auth, notification_id, timeout=20)
        assert view["status"] == "completed" and view["counts"]["dead"] == view["counts"]["targeted"] == 3, view
        rows = await deliveries(api, auth, notification_id)
        assert {(r["reason"], r["attempts"]) for r in rows} == {("delivery_limit", 1)}
        assert len((await api.get("/v1/dead-letters", headers=auth)).json()["items"]) == 3
        factory.providers["android"].answer = lambda _push: Sent()
        replay = await api.post("/v1/dead-letters/replay", json={"notification_id": notification_id}, headers=auth)
        assert replay.status_code == 202 and replay.json()["replayed"] == 3
        view = await wait_done(api, auth, notification_id, timeout=20)
        assert view["counts"]["sent"] == 3, view


async def _wait_attempted(api, auth, notification_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The deliveries once each has been tried once (and waits an hour for the next try)."""
    deadline = time.monotonic() + 20
    while True:
        rows = await deliveries(api, auth, notification_id)
        if len(rows) == 3 and all(r["attempts"] == 1 and r["status"] == "queued" for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.1)
