"""Devices: tokens kept encrypted, found again by a keyed hash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.security import SecretBox, new_id
from clarion.store.tables import devices, users


def now() -> datetime:
    return datetime.now(UTC)


def device_context(platform: str) -> bytes:
    return f"device:{platform}".encode()


def device_address(platform: str, token: str | None, subscription: dict[str, Any] | None) -> tuple[str, bytes]:
    """(what identifies the device — its token or endpoint —, the secret to store)."""
    if platform == "web":
        assert subscription is not None
        return subscription["endpoint"], json.dumps(subscription, separators=(",", ":")).encode()
    assert token is not None
    return token, token.encode()


def device_address_of(platform: str, secret: bytes) -> str:
    """The token or endpoint inside a decrypted device secret."""
    return str(json.loads(secret)["endpoint"]) if platform == "web" else secret.decode()


def decrypt_device(box: SecretBox, platform: str, token_enc: bytes) -> tuple[str, dict[str, str] | None]:
    """(token or endpoint, web push keys or None) of a stored device."""
    secret = box.decrypt(token_enc, device_context(platform))
    if platform == "web":
        subscription = json.loads(secret)
        return subscription["endpoint"], subscription["keys"]
    return secret.decode(), None


async def register_device(
    conn: AsyncConnection,
    box: SecretBox,
    app_pk: int,
    user_pk: int,
    platform: str,
    address: str,
    secret: bytes,
    metadata: dict[str, Any],
) -> tuple[str, bool]:
    """Create the device, or move the existing one with this token to the user
    and reactivate it. Returns (device id, created)."""
    token_hash = box.lookup_hash(f"{platform}:{address}")
    query = sa.select(devices.c.pk, devices.c.id).where(
        devices.c.app_pk == app_pk, devices.c.token_hash.in_(box.lookup_hashes(f"{platform}:{address}"))
    )
    existing = (await conn.execute(query)).first()
    stamp = now()
    values = {
        **metadata,
        "user_pk": user_pk,
        "token_enc": box.encrypt(secret, device_context(platform)),
        "token_hash": token_hash,
        "active": True,
        "deactivated_reason": None,
        "last_seen_at": stamp,
    }
    if existing is not None:
        await conn.execute(devices.update().where(devices.c.pk == existing.pk).values(**values))
        return existing.id, False
    device_id = new_id("dev_")
    await conn.execute(
        devices.insert().values(
            **values, id=device_id, app_pk=app_pk, platform=platform, created_at=stamp
        )
    )
    return device_id, True


def _with_user_id() -> sa.Select[Any]:
    return sa.select(devices, users.c.user_id).join(users, users.c.pk == devices.c.user_pk)


async def find_device(conn: AsyncConnection, app_pk: int, device_id: str) -> sa.Row[Any] | None:
    query = _with_user_id().where(devices.c.app_pk == app_pk, devices.c.id == device_id)
    return (await conn.execute(query)).first()


async def delete_device(conn: AsyncConnection, app_pk: int, device_id: str) -> bool:
    result = await conn.execute(devices.delete().where(devices.c.app_pk == app_pk, devices.c.id == device_id))
    return result.rowcount == 1


async def devices_of_user(conn: AsyncConnection, user_pk: int, after: int | None, limit: int) -> list[sa.Row[Any]]:
    query = _with_user_id().where(devices.c.user_pk == user_pk)
    if after is not None:
        query = query.where(devices.c.pk > after)
    return list((await conn.execute(query.order_by(devices.c.pk).limit(limit))).all())


async def deactivate_device(conn: AsyncConnection, device_pk: int, reason: str) -> None:
    await conn.execute(
        devices.update().where(devices.c.pk == device_pk).values(active=False, deactivated_reason=reason[:64])
    )
