"""The pipeline in one object: fan-out, scheduler and workers.

`clarion serve` starts a `Pipeline` next to the API (embedded broker by
default); `clarion worker` runs `run_worker`, the same pipeline without the
API, any number of times against PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from clarion.config import Settings
from clarion.dispatch.fanout import FanOut
from clarion.dispatch.providers import ProviderFactory, ProviderPool, stored_provider_factory
from clarion.dispatch.scheduler import run_scheduler
from clarion.dispatch.worker import Worker
from clarion.domain.retry import RetryPolicy
from clarion.queue.base import Broker
from clarion.queue.embedded import EmbeddedBroker
from clarion.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)
IDLE_SECONDS = 0.2
ERROR_PAUSE_SECONDS = 2.0  # after a failed fan-out (e.g. the broker is away): no log flood


def make_broker(settings: Settings, runtime: Runtime) -> Broker:
    if settings.queue_url == "embedded":
        return EmbeddedBroker(runtime.engine)
    from clarion.queue.rabbitmq import RabbitBroker

    return RabbitBroker(settings.queue_url)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)


def default_provider_factory(runtime: Runtime) -> ProviderFactory:
    return stored_provider_factory(runtime)


class Pipeline:
    """Fan-out, scheduler and workers in this process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        broker: Broker | None = None,
        provider_factory: ProviderFactory | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.runtime = runtime
        self.broker = broker or make_broker(runtime.settings, runtime)
        factory = provider_factory or default_provider_factory(runtime)
        self.providers = ProviderPool(runtime.engine, factory)
        self.fanout = FanOut(runtime.engine, self.broker)
        policy = policy or retry_policy(runtime.settings)
        self.worker = Worker(runtime.engine, runtime.box, self.broker, self.providers, policy)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def wake(self) -> None:
        """A notification was accepted or released: look for fan-out work now."""
        self._wake.set()

    async def start(self) -> None:
        await self.broker.start()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._fan_out_loop(), name="clarion-fanout"),
            asyncio.create_task(
                run_scheduler(self.runtime.engine, self._stop, self._wake), name="clarion-scheduler"
            ),
            asyncio.create_task(self.broker.consume(self.worker.handle, self._stop), name="clarion-workers"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.providers.aclose()
        await self.broker.close()

    async def _fan_out_loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = await self.fanout.run_once()
            except Exception:
                log.exception("fan-out failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), ERROR_PAUSE_SECONDS)
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("pipeline task %s stopped: %r", task.get_name(), task.exception())


async def run_worker(settings: Settings) -> None:
    """`clarion worker`: the pipeline without the API, until SIGTERM/SIGINT."""
    runtime = build_runtime(settings, announce=False)
    pipeline = Pipeline(runtime)
    runtime.pipeline = pipeline
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await pipeline.start()
    try:
        await stop.wait()
    finally:
        await pipeline.stop()
        await runtime.aclose()


async def publisher(runtime: Runtime) -> Broker:
    """The broker API routes publish to: the pipeline's own in `clarion serve`,
    else one opened on first use (`clarion api`)."""
    if runtime.pipeline is not None:
        return runtime.pipeline.broker  # type: ignore[no-any-return]
    broker = runtime.extras.get("broker")
    if broker is None:
        broker = make_broker(runtime.settings, runtime)
        await broker.start()
        runtime.extras["broker"] = broker
    return broker  # type: ignore[no-any-return]
