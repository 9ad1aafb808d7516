"""Client receipts: delivered / opened / dismissed, keyed by delivery id.

Each stage is stamped once (a repeat changes nothing) and a delivery's
status only moves forward: sent → delivered → opened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion import constants as c
from clarion.store.tables import deliveries

STAMP_COLUMN = {"delivered": "delivered_at", "opened": "opened_at", "dismissed": "dismissed_at"}
# A client can only report on what reached it: these were never handed to a provider.
NEVER_SENT = (c.SKIPPED, c.CANCELED)
# The status each event moves to, and the statuses it may move from.
FORWARD = {
    "delivered": (c.DELIVERED, (c.QUEUED, c.SENT, c.FAILED, c.DEAD)),
    "opened": (c.OPENED, (c.QUEUED, c.SENT, c.DELIVERED, c.FAILED, c.DEAD)),
}


class NotFound(Exception):
    """No such delivery in this app."""


class NeverSent(Exception):
    """The delivery was skipped or canceled; no client can have seen it."""


async def record_event(conn: AsyncConnection, app_pk: int, delivery_id: str, event: str, at: datetime) -> None:
    """Stamp the event and move the status forward. Raises NotFound, NeverSent."""
    row = (
        await conn.execute(
            sa.select(deliveries.c.pk, deliveries.c.status, deliveries.c.sent_at).where(
                deliveries.c.app_pk == app_pk, deliveries.c.id == delivery_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(delivery_id)
    if row.status in NEVER_SENT:
        raise NeverSent(delivery_id)
    await _stamp(conn, row.pk, STAMP_COLUMN[event], at)
    if event == "opened":
        await _stamp(conn, row.pk, "delivered_at", at)  # opened implies delivered
    if event in FORWARD:
        await _move_forward(conn, row, event, at)


async def _stamp(conn: AsyncConnection, pk: int, column: str, at: datetime) -> None:
    await conn.execute(
        deliveries.update().where(deliveries.c.pk == pk, deliveries.c[column].is_(None)).values({column: at})
    )


async def _move_forward(conn: AsyncConnection, row: Any, event: str, at: datetime) -> None:
    status, allowed = FORWARD[event]
    values: dict[str, Any] = {"status": status, "reason": None}
    if row.sent_at is None:
        values["sent_at"] = at  # the provider took it after all: the client has it
    await conn.execute(
        deliveries.update().where(deliveries.c.pk == row.pk, deliveries.c.status.in_(allowed)).values(**values)
    )
