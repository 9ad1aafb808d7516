"""Users, their preferences, and GDPR erasure and export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store.tables import deliveries, devices, notifications, preferences, topic_subscriptions, users


def now() -> datetime:
    return datetime.now(UTC)


async def find_user(conn: AsyncConnection, app_pk: int, user_id: str) -> sa.Row[Any] | None:
    query = sa.select(users).where(users.c.app_pk == app_pk, users.c.user_id == user_id)
    return (await conn.execute(query)).first()


async def upsert_user(conn: AsyncConnection, app_pk: int, user_id: str, values: dict[str, Any]) -> tuple[int, bool]:
    """Set the given fields (others stay as they are). Returns (user pk, created)."""
    existing = await find_user(conn, app_pk, user_id)
    if existing is not None:
        if values:
            await conn.execute(users.update().where(users.c.pk == existing.pk).values(**values, updated_at=now()))
        return existing.pk, False
    stamp = now()
    row = {"attributes": {}, **values, "app_pk": app_pk, "user_id": user_id, "created_at": stamp, "updated_at": stamp}
    result = await conn.execute(users.insert().values(**row))
    return int(result.inserted_primary_key[0]), True  # type: ignore[index]


async def ensure_users(conn: AsyncConnection, app_pk: int, user_ids: list[str]) -> dict[str, int]:
    """The pk of every user id, creating the missing ones."""
    pks: dict[str, int] = {}
    for user_id in dict.fromkeys(user_ids):
        pks[user_id], _ = await upsert_user(conn, app_pk, user_id, {})
    return pks


async def erase_user(conn: AsyncConnection, user: sa.Row[Any]) -> None:
    """GDPR erasure: the user and everything personal goes; delivery records
    stay, anonymised, so counts and stats still add up."""
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.user_pk == user.pk)
        .values(user_pk=None, user_id=None, device_pk=None, device_id=None, rendered=None)
    )
    await _erase_from_audiences(conn, user.app_pk, user.user_id)
    await conn.execute(users.delete().where(users.c.pk == user.pk))  # cascades devices, prefs, topics


async def _erase_from_audiences(conn: AsyncConnection, app_pk: int, user_id: str) -> None:
    rows = await conn.execute(
        sa.select(notifications.c.pk, notifications.c.request).where(notifications.c.app_pk == app_pk)
    )
    for pk, request in rows.all():
        audience = (request or {}).get("audience") or {}
        if user_id in (audience.get("user_ids") or []):
            audience = {**audience, "user_ids": [u for u in audience["user_ids"] if u != user_id]}
            await conn.execute(
                notifications.update().where(notifications.c.pk == pk).values(request={**request, "audience": audience})
            )


async def compact_after_erasure(conn: AsyncConnection) -> None:
    """SQLite keeps old pages in the WAL until a checkpoint; fold them in now."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


async def get_preferences(conn: AsyncConnection, user_pk: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(preferences).where(preferences.c.user_pk == user_pk))).first()


async def put_preferences(conn: AsyncConnection, user_pk: int, values: dict[str, Any]) -> None:
    if await get_preferences(conn, user_pk) is None:
        row = {"opt_out_all": False, "types": {}, "categories": {}, **values, "user_pk": user_pk}
        await conn.execute(preferences.insert().values(**row))
    elif values:
        await conn.execute(preferences.update().where(preferences.c.user_pk == user_pk).values(**values))


async def topics_of(conn: AsyncConnection, user_pk: int) -> list[str]:
    query = (
        sa.select(topic_subscriptions.c.topic)
        .where(topic_subscriptions.c.user_pk == user_pk)
        .order_by(topic_subscriptions.c.topic)
    )
    return list((await conn.execute(query)).scalars())


async def export_user(conn: AsyncConnection, user: sa.Row[Any]) -> dict[str, Any]:
    """Everything stored about the user (device tokens stay encrypted and out)."""
    device_rows = (
        await conn.execute(
            sa.select(devices, users.c.user_id).join(users, users.c.pk == devices.c.user_pk)
            .where(devices.c.user_pk == user.pk)
        )
    ).all()
    delivery_rows = (
        await conn.execute(
            sa.select(deliveries, notifications.c.id.label("notification_id"))
            .join(notifications, notifications.c.pk == deliveries.c.notification_pk)
            .where(deliveries.c.user_pk == user.pk)
            .order_by(deliveries.c.pk)
        )
    ).all()
    prefs = await get_preferences(conn, user.pk)
    return {
        "user": user,
        "devices": device_rows,
        "preferences": prefs,
        "topics": await topics_of(conn, user.pk),
        "deliveries": delivery_rows,
    }
