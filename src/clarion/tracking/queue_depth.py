"""Queue depth for the `clarion_queue_depth` gauge, read when /metrics is scraped."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from clarion import metrics
from clarion.store.tables import queue_jobs


async def embedded_depth(engine: Any) -> dict[str, int]:
    """Jobs waiting per platform in the embedded broker (its queues are per platform and app)."""
    platform = sa.func.substr(queue_jobs.c.queue, 1, sa.func.instr(queue_jobs.c.queue, ".") - 1)
    if engine.dialect.name != "sqlite":
        platform = sa.func.split_part(queue_jobs.c.queue, ".", 1)
    query = sa.select(platform.label("platform"), sa.func.count()).group_by(platform)
    async with engine.connect() as conn:
        return {str(name): int(count) for name, count in (await conn.execute(query)).all()}


async def observe_queue_depth(runtime: Any) -> None:
    """Set the gauge from the broker this process uses (if it can tell)."""
    broker = getattr(runtime.pipeline, "broker", None) or runtime.extras.get("broker")
    if runtime.settings.queue_url == "embedded":
        depths = await embedded_depth(runtime.engine)
    elif broker is not None and hasattr(broker, "depth"):
        depths = await broker.depth()
    else:
        return
    metrics.QUEUE_DEPTH.clear()
    for name, count in depths.items():
        metrics.QUEUE_DEPTH.labels(name).set(count)
