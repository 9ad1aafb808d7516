"""Apps, their API keys and their provider credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.security import SecretBox, hash_api_key, new_id, new_token
from clarion.store.tables import api_keys, apps

PROVIDER_COLUMNS = {"apns": "apns_credentials_enc", "fcm": "fcm_credentials_enc"}


def now() -> datetime:
    return datetime.now(UTC)


def app_context(app_id: str, what: str) -> bytes:
    # Binds each ciphertext to its app and purpose: a blob copied elsewhere fails to decrypt.
    return f"{app_id}:{what}".encode()


async def create_app(
    conn: AsyncConnection, box: SecretBox, name: str, vapid_private: bytes, vapid_public: str
) -> dict[str, Any]:
    app_id = new_id("app_")
    result = await conn.execute(
        apps.insert().values(
            id=app_id,
            name=name,
            default_ttl=86400,
            frequency_caps={},
            credential_problems={},
            vapid_public_key=vapid_public,
            vapid_private_key_enc=box.encrypt(vapid_private, app_context(app_id, "vapid")),
            created_at=now(),
        )
    )
    app_pk = int(result.inserted_primary_key[0])  # type: ignore[index]
    secret_id, secret = await create_key(conn, app_pk, "secret")
    _, publishable = await create_key(conn, app_pk, "publishable")
    return {
        "id": app_id,
        "name": name,
        "secret_key": secret,
        "publishable_key": publishable,
        "key_id": secret_id,
        "vapid_public_key": vapid_public,
    }


async def create_key(conn: AsyncConnection, app_pk: int, kind: str) -> tuple[str, str]:
    """A new key; only its hash is stored. Returns (key id, the key itself)."""
    key = new_token("sk_" if kind == "secret" else "pk_")
    key_id = new_id("key_")
    await conn.execute(
        api_keys.insert().values(id=key_id, app_pk=app_pk, kind=kind, key_hash=hash_api_key(key), created_at=now())
    )
    return key_id, key


async def revoke_key(conn: AsyncConnection, app_pk: int, key_id: str) -> bool:
    result = await conn.execute(
        api_keys.update()
        .where(api_keys.c.app_pk == app_pk, api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return result.rowcount == 1


async def find_app(conn: AsyncConnection, app_id: str) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(apps).where(apps.c.id == app_id))).first()


async def update_app(conn: AsyncConnection, app_pk: int, values: dict[str, Any]) -> None:
    if values:
        await conn.execute(apps.update().where(apps.c.pk == app_pk).values(**values))


async def delete_app(conn: AsyncConnection, app_pk: int) -> None:
    await conn.execute(apps.delete().where(apps.c.pk == app_pk))


async def store_credentials(
    conn: AsyncConnection, box: SecretBox, app: sa.Row[Any], provider: str, credentials: dict[str, Any]
) -> None:
    blob = box.encrypt(json.dumps(credentials).encode(), app_context(app.id, provider))
    problems = {k: v for k, v in (app.credential_problems or {}).items() if k != provider}
    await conn.execute(
        apps.update()
        .where(apps.c.pk == app.pk)
        .values({PROVIDER_COLUMNS[provider]: blob, "credential_problems": problems})
    )


def read_credentials(box: SecretBox, app: sa.Row[Any], provider: str) -> dict[str, Any] | None:
    """The decrypted credentials of one provider, or None when not configured."""
    blob = getattr(app, PROVIDER_COLUMNS[provider])
    if blob is None:
        return None
    result: dict[str, Any] = json.loads(box.decrypt(blob, app_context(app.id, provider)))
    return result


def read_vapid_private_key(box: SecretBox, app: sa.Row[Any]) -> bytes:
    return box.decrypt(app.vapid_private_key_enc, app_context(app.id, "vapid"))


async def store_vapid(
    conn: AsyncConnection, box: SecretBox, app: sa.Row[Any], subject: str, private: bytes | None, public: str | None
) -> None:
    values: dict[str, Any] = {"webpush_subject": subject}
    if private is not None:
        values["vapid_private_key_enc"] = box.encrypt(private, app_context(app.id, "vapid"))
        values["vapid_public_key"] = public
    await conn.execute(apps.update().where(apps.c.pk == app.pk).values(**values))
