"""`Idempotency-Key` records (API.md, Conventions): only a hash of the body is kept."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clarion.store.tables import idempotency_keys

KEEP_FOR = timedelta(hours=24)
# A request that never finished (its process died) frees its key after this.
LOCK_FOR = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Replay:
    """The key's first request finished: answer with what it answered."""

    status_code: int
    response: Any


class KeyConflict(Exception):
    """409: the key was used with another body, or its first request is still running."""

    def __init__(self, detail: str, in_progress: bool) -> None:
        super().__init__(detail)
        self.in_progress = in_progress


def body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def reserve(engine: AsyncEngine, app_pk: int, route: str, key: str, digest: str) -> Replay | None:
    """Lock the key for this request; a Replay when it already has an answer.
    Raises KeyConflict."""
    now = datetime.now(UTC)
    where = sa.and_(
        idempotency_keys.c.app_pk == app_pk, idempotency_keys.c.route == route, idempotency_keys.c.key == key
    )
    try:
        async with engine.begin() as conn:
            row = (await conn.execute(sa.select(idempotency_keys).where(where))).first()
            if row is not None and row.created_at > now - KEEP_FOR:
                return await _existing(conn, row, where, digest, now)
            if row is not None:
                await conn.execute(idempotency_keys.delete().where(where))
            await conn.execute(
                idempotency_keys.insert().values(
                    app_pk=app_pk,
                    route=route,
                    key=key,
                    body_hash=digest,
                    locked_until=now + LOCK_FOR,
                    created_at=now,
                )
            )
    except IntegrityError as exc:  # another request inserted it between our read and write
        raise KeyConflict("a request with this Idempotency-Key is in progress", in_progress=True) from exc
    return None


async def _existing(
    conn: AsyncConnection, row: sa.Row[Any], where: sa.ColumnElement[bool], digest: str, now: datetime
) -> Replay | None:
    if row.status_code is not None:
        if row.body_hash != digest:
            raise KeyConflict("this Idempotency-Key was used with a different body", in_progress=False)
        return Replay(row.status_code, row.response)
    if row.locked_until is not None and row.locked_until > now:
        raise KeyConflict("a request with this Idempotency-Key is in progress", in_progress=True)
    # The first request died before answering: the key is free again.
    taken = await conn.execute(
        idempotency_keys.update()
        .where(
            where,
            idempotency_keys.c.status_code.is_(None),
            idempotency_keys.c.locked_until == row.locked_until,
        )
        .values(body_hash=digest, locked_until=now + LOCK_FOR, created_at=now)
    )
    if taken.rowcount != 1:
        raise KeyConflict("a request with this Idempotency-Key is in progress", in_progress=True)
    return None


async def complete(
    conn: AsyncConnection, app_pk: int, route: str, key: str, status_code: int, response: Any
) -> None:
    """Record the answer, in the same transaction as what the request created."""
    await conn.execute(
        idempotency_keys.update()
        .where(
            idempotency_keys.c.app_pk == app_pk,
            idempotency_keys.c.route == route,
            idempotency_keys.c.key == key,
        )
        .values(status_code=status_code, response=response, locked_until=None)
    )


async def release(engine: AsyncEngine, app_pk: int, route: str, key: str) -> None:
    """The request failed before creating anything: free the key at once."""
    async with engine.begin() as conn:
        await conn.execute(
            idempotency_keys.delete().where(
                idempotency_keys.c.app_pk == app_pk,
                idempotency_keys.c.route == route,
                idempotency_keys.c.key == key,
                idempotency_keys.c.status_code.is_(None),
            )
        )
