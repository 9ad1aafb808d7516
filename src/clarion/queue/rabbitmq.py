"""RabbitMQ broker (aio-pika): durable quorum queues per platform, publisher
confirms, manual acks after the statuses are committed, delayed retries
through TTL queues, and a dead-letter exchange for poison messages.

Topology (names from constants.py, behind an optional prefix):
- exchange `clarion` (topic): work queue `clarion.work.<platform>` binds
  `<platform>` and `*.<platform>`;
- exchange `clarion.delay` (topic): queue `clarion.delay.<s>` binds `<s>.*`
  and holds messages for s seconds, then dead-letters them back to
  `clarion` under the same routing key `<s>.<platform>`;
- exchange `clarion.dlx` (fanout) -> `clarion.dead`: messages a work queue
  gave up on after its delivery limit; a consumer marks their deliveries
  `dead` (reason `delivery_limit`), so none waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from clarion import constants as c
from clarion.queue.base import Handler, Job, Message, Writes

log = logging.getLogger(__name__)
QUORUM = {"x-queue-type": "quorum"}
DELIVERY_LIMIT = 20


def delay_level(seconds: float) -> int:
    """The longest delay queue not beyond `seconds` (the shortest for less)."""
    fitting = [level for level in c.DELAY_LEVELS if level <= seconds]
    return fitting[-1] if fitting else c.DELAY_LEVELS[0]


class RabbitBroker:
    transactional = False

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        prefetch: int = c.RABBITMQ_PREFETCH,
        provider_limit: int = c.PROVIDER_CONCURRENCY,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.prefetch = prefetch
        self.provider_limit = provider_limit
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: Any = None
        self._delay_exchange: Any = None
        self._limits: dict[tuple[int, str], asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.provider_limit)
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._work_queues: dict[str, Any] = {}
        self._dead_queue: Any = None

    def name(self, template: str, **fields: Any) -> str:
        return self.prefix + template.format(**fields)

    async def start(self) -> None:
        if self._connection is not None:
            return
        self._connection = await aio_pika.connect_robust(self.url)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)  # type: ignore[assignment]
        await self._channel.set_qos(prefetch_count=self.prefetch)  # per consumer
        await self._declare(self._channel)  # type: ignore[arg-type]

    async def _declare(self, channel: AbstractRobustChannel) -> None:
        topic, durable = aio_pika.ExchangeType.TOPIC, True
        self._exchange = await channel.declare_exchange(self.name(c.EXCHANGE), topic, durable=durable)
        self._delay_exchange = await channel.declare_exchange(
            self.name(c.EXCHANGE + ".delay"), topic, durable=durable
        )
        dlx = await channel.declare_exchange(
            self.name(c.DEAD_LETTER_EXCHANGE), aio_pika.ExchangeType.FANOUT, durable=durable
        )
        dead = await channel.declare_queue(self.name(c.DEAD_LETTER_QUEUE), durable=True, arguments=QUORUM)
        await dead.bind(dlx, routing_key="")
        self._dead_queue = dead
        for platform in c.PLATFORMS:
            arguments = {**QUORUM, "x-dead-letter-exchange": dlx.name, "x-delivery-limit": DELIVERY_LIMIT}
            queue = await channel.declare_queue(
                self.name(c.WORK_QUEUE, platform=platform), durable=True, arguments=arguments
            )
            await queue.bind(self._exchange, routing_key=platform)
            await queue.bind(self._exchange, routing_key=f"*.{platform}")
            self._work_queues[platform] = queue
        for level in c.DELAY_LEVELS:
            arguments = {
                **QUORUM,
                "x-message-ttl": level * 1000,
                "x-dead-letter-exchange": self._exchange.name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
            queue = await channel.declare_queue(
                self.name(c.DELAY_QUEUE, seconds=level), durable=True, arguments=arguments
            )
            await queue.bind(self._delay_exchange, routing_key=f"{level}.*")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def publish(self, jobs: Sequence[Job]) -> None:
        """Publish and wait for every confirm (raises if the broker refuses one)."""
        await asyncio.gather(*(self._publish_one(job) for job in jobs))

    async def _publish_one(self, job: Job) -> None:
        message = aio_pika.Message(job.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        wait = job.available_at - time.time()
        if wait <= c.DUE_SLACK_SECONDS:
            await self._exchange.publish(message, routing_key=job.platform)
        else:
            await self._delay_exchange.publish(message, routing_key=f"{delay_level(wait)}.{job.platform}")

    async def commit(self, engine: AsyncEngine, writes: Writes, settled: Sequence[Message] = ()) -> None:
        async with engine.begin() as conn:
            jobs = await writes(conn)
        await self.publish(jobs)
        for message in settled:
            await message.handle.ack()

    async def depth(self) -> dict[str, int]:
        """Messages ready in each platform's work queue (for /metrics)."""
        assert self._channel is not None
        depths = {}
        for platform in c.PLATFORMS:
            queue = await self._channel.get_queue(self.name(c.WORK_QUEUE, platform=platform), ensure=False)
            # A robust channel hands back its cached declaration; declaring again reads the count now.
            declared = await queue.declare()
            depths[platform] = int(declared.message_count or 0)
        return depths

    async def purge(self) -> None:
        assert self._channel is not None
        names = [self.name(c.WORK_QUEUE, platform=p) for p in c.PLATFORMS]
        names += [self.name(c.DELAY_QUEUE, seconds=s) for s in c.DELAY_LEVELS] + [
            self.name(c.DEAD_LETTER_QUEUE)
        ]
        for queue_name in names:
            queue = await self._channel.get_queue(queue_name, ensure=False)
            await queue.purge()

    async def delete_all(self) -> None:
        """Remove this prefix's queues and exchanges (tests)."""
        assert self._channel is not None
        names = [self.name(c.WORK_QUEUE, platform=p) for p in c.PLATFORMS]
        names += [self.name(c.DELAY_QUEUE, seconds=s) for s in c.DELAY_LEVELS] + [
            self.name(c.DEAD_LETTER_QUEUE)
        ]
        for queue_name in names:
            await self._channel.queue_delete(queue_name)
        for exchange in (c.EXCHANGE, c.EXCHANGE + ".delay", c.DEAD_LETTER_EXCHANGE):
            await self._channel.exchange_delete(self.name(exchange))

    async def consume(self, handler: Handler, stop: asyncio.Event) -> None:
        """One consumer per platform queue, each with its own prefetch (per
        consumer QoS), so a slow provider holds only its own platform's messages."""
        assert self._connection is not None
        tags = []
        assert self._channel is not None
        for platform in c.PLATFORMS:
            queue = self._work_queues[platform]

            async def on_message(raw: AbstractIncomingMessage) -> None:
                await self._track(handler, raw)

            tags.append((queue, await queue.consume(on_message)))

        async def on_dead(raw: AbstractIncomingMessage) -> None:
            await self._track(handler, raw, dead=True)

        tags.append((self._dead_queue, await self._dead_queue.consume(on_dead)))
        await stop.wait()
        for queue, tag in tags:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)

    async def _track(self, handler: Handler, raw: AbstractIncomingMessage, *, dead: bool = False) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await (self._on_dead(handler, raw) if dead else self._on_message(handler, raw))
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _on_message(self, handler: Handler, raw: AbstractIncomingMessage) -> None:
        job = Job.decode(raw.body)
        try:
            if job.available_at > time.time() + c.DUE_SLACK_SECONDS:
                await self.publish([job])  # not due yet: another hop through the delay queues
                await raw.ack()
                return
            async with self._limits[(job.app_pk, job.platform)]:
                await handler(Message(job, raw))
        except Exception:
            log.exception("job for notification %s failed; it comes back", job.notification_pk)
            await self._later(job, raw)

    async def _on_dead(self, handler: Handler, raw: AbstractIncomingMessage) -> None:
        """A job a work queue gave up on (its delivery limit: it kept killing
        its workers). The handler marks its still-queued deliveries `dead`,
        so they are listed and replayable instead of waiting forever."""
        try:
            job = Job.decode(raw.body)
        except (ValueError, KeyError, TypeError):
            log.error("dropping an unreadable dead-lettered message")
            await raw.ack()
            return
        try:
            await handler(Message(job, raw, {"poison": True}))
        except Exception:
            log.exception("dead-lettered job of notification %s not recorded; it comes back", job.notification_pk)
            await asyncio.sleep(1)  # not at once: that would spin
            with contextlib.suppress(Exception):
                await raw.nack(requeue=True)

    async def _later(self, job: Job, raw: AbstractIncomingMessage) -> None:
        """Put a failed job back a second later (not at once: that would spin)."""
        try:
            await self.publish(
                [Job(job.app_pk, job.platform, job.notification_pk, job.deliveries, time.time() + 1)]
            )
            await raw.ack()
        except Exception:  # noqa: BLE001 - the broker is away; redelivery brings the job back
            with contextlib.suppress(Exception):
                await raw.nack(requeue=True)
