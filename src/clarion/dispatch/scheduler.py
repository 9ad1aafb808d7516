"""Time-driven steps: release notifications whose `send_at` has come, and
mark notifications `completed` once nothing of theirs is queued."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.store import notifications as records

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5


async def tick(engine: AsyncEngine) -> int:
    """One pass; returns how many notifications were released."""
    async with engine.begin() as conn:
        released = await records.release_scheduled(conn, datetime.now(UTC))
    async with engine.begin() as conn:
        await records.complete_finished(conn)
    return released


async def run_scheduler(engine: AsyncEngine, stop: asyncio.Event, wake: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            if await tick(engine):
                wake.set()
        except Exception:
            log.exception("scheduler tick failed; trying again")
        try:
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        except TimeoutError:
            pass
