"""The scaled shape: PostgreSQL + RabbitMQ (quorum queues, confirms, delayed retries)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from clarion.dispatch.service import Pipeline
from clarion.domain.retry import RetryPolicy
from clarion.queue.base import Job
from clarion.queue.rabbitmq import RabbitBroker, delay_level
from clarion.runtime import Runtime
from tests.pipeline.conftest import add_device, deliveries, wait_done

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
async def runtime(request, tmp_path, fakes) -> AsyncIterator[Runtime]:
    from clarion.runtime import build_runtime
    from tests.conftest import truncate_postgres
    from tests.pipeline.conftest import fake_settings

    rt = build_runtime(fake_settings(tmp_path, request.getfixturevalue("postgres_migrated"), fakes), announce=False)
    await truncate_postgres(rt)
    yield rt
    await rt.aclose()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[RabbitBroker]:
    rabbit = RabbitBroker(amqp_url, prefix=f"t{secrets.token_hex(4)}.")
    yield rabbit
    await rabbit.start()
    await rabbit.delete_all()
    await rabbit.close()


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, base_seconds=0.5, max_seconds=1.0)


@pytest.fixture
async def pipeline(runtime, factory, policy, broker) -> AsyncIterator[Pipeline]:
    pipe = Pipeline(runtime, broker=broker, provider_factory=factory, policy=policy)
    runtime.pipeline = pipe
    await pipe.start()
    yield pipe
    await pipe.stop()
    runtime.pipeline = None


def test_delay_levels() -> None:
    """A wait goes to the longest delay queue not beyond it."""
    assert [delay_level(s) for s in (0.2, 1, 1.9, 2, 5, 100_000)] == [1, 1, 1, 2, 4, 65536]


async def test_all_platforms_through_rabbitmq(api, keys, fakes) -> None:
    """Deliveries for all three platforms travel through their quorum queues and are sent."""
    auth = await keys()
    for n in range(30):
        await add_device(api, auth, f"u{n}", ("ios", "android", "web")[n % 3], fakes)
    response = await api.post("/v1/notifications", json={"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}, headers=auth)
    view = await wait_done(api, auth, response.json()["id"], timeout=30)
    assert view["counts"]["sent"] == 30, view
    assert len(fakes.apns.received) == len(fakes.fcm.received) == len(fakes.webpush.received) == 10


async def test_retries_through_delay_queues(api, keys, fakes) -> None:
    """503s are retried through the TTL delay queues until sent."""
    auth = await keys()
    for n in range(5):
        await add_device(api, auth, f"u{n}")
    fakes.fcm.fail(503, "UNAVAILABLE", times=7)
    response = await api.post("/v1/notifications", json={"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}, headers=auth)
    view = await wait_done(api, auth, response.json()["id"], timeout=30)
    assert view["counts"]["sent"] == 5, view
    assert sum(r["attempts"] for r in await deliveries(api, auth, view["id"])) == 12


async def test_queue_depth_reported_from_rabbitmq(broker: RabbitBroker) -> None:
    """The broker reports each platform's waiting messages for the queue-depth gauge."""
    await broker.start()
    await broker.publish([Job(app_pk=1, platform="web", notification_pk=1, deliveries=(1, 2))])
    for _ in range(50):
        depths = await broker.depth()
        if depths["web"] == 1:
            break
        await asyncio.sleep(0.05)
    assert depths == {"ios": 0, "android": 0, "web": 1}
