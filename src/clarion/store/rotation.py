"""Re-encrypt every stored secret under the primary master key, a batch at
a time (each batch its own transaction), so Clarion keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.security import SecretBox
from clarion.store.apps import PROVIDER_COLUMNS, app_context
from clarion.store.devices import device_address_of, device_context
from clarion.store.tables import apps, devices

BATCH = 500
APP_SECRETS = {"vapid_private_key_enc": "vapid", **{column: name for name, column in PROVIDER_COLUMNS.items()}}


async def count_secret_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        n_apps = (await conn.execute(sa.select(sa.func.count()).select_from(apps))).scalar_one()
        n_devices = (await conn.execute(sa.select(sa.func.count()).select_from(devices))).scalar_one()
    return int(n_apps + n_devices)


async def rotate(engine: AsyncEngine, box: SecretBox) -> AsyncIterator[tuple[int, int]]:
    """Yields (rows looked at, rows re-encrypted) after each batch."""
    async for progress in _rotate_apps(engine, box):
        yield progress
    async for progress in _rotate_devices(engine, box):
        yield progress


async def _batches(engine: AsyncEngine, table: sa.Table, columns: list[Any]) -> AsyncIterator[Sequence[Any]]:
    after = 0
    while True:
        query = sa.select(table.c.pk, *columns).where(table.c.pk > after).order_by(table.c.pk).limit(BATCH)
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].pk


async def _rotate_apps(engine: AsyncEngine, box: SecretBox) -> AsyncIterator[tuple[int, int]]:
    columns = [apps.c.id, *(apps.c[name] for name in APP_SECRETS)]
    async for rows in _batches(engine, apps, columns):
        changed = 0
        async with engine.begin() as conn:
            for row in rows:
                values = {
                    column: box.encrypt(box.decrypt(blob, app_context(row.id, what)), app_context(row.id, what))
                    for column, what in APP_SECRETS.items()
                    if (blob := getattr(row, column)) is not None and not box.is_current(blob)
                }
                if values:
                    changed += 1
                    await conn.execute(apps.update().where(apps.c.pk == row.pk).values(**values))
        yield len(rows), changed


async def _rotate_devices(engine: AsyncEngine, box: SecretBox) -> AsyncIterator[tuple[int, int]]:
    async for rows in _batches(engine, devices, [devices.c.platform, devices.c.token_enc]):
        stale = [row for row in rows if not box.is_current(row.token_enc)]
        async with engine.begin() as conn:
            for row in stale:
                secret = box.decrypt(row.token_enc, device_context(row.platform))
                await conn.execute(
                    devices.update()
                    .where(devices.c.pk == row.pk)
                    .values(
                        token_enc=box.encrypt(secret, device_context(row.platform)),
                        token_hash=box.lookup_hash(f"{row.platform}:{device_address_of(row.platform, secret)}"),
                    )
                )
        yield len(rows), len(stale)
