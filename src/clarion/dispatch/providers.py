"""Long-lived provider clients, one per app and platform, rebuilt when the
app's credentials change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.providers.base import Provider
from clarion.store.tables import apps

# (the app's row, platform) -> a provider, or None when the app has no credentials for it
ProviderFactory = Callable[[sa.Row[Any], str], Awaitable[Provider | None]]
REFRESH_SECONDS = 30.0
CREDENTIAL_COLUMNS = {
    "ios": "apns_credentials_enc",
    "android": "fcm_credentials_enc",
    "web": "vapid_private_key_enc",
}


class ProviderPool:
    def __init__(self, engine: AsyncEngine, factory: ProviderFactory) -> None:
        self.engine = engine
        self.factory = factory
        # (app pk, platform) -> (credential fingerprint, provider, checked at)
        self._entries: dict[tuple[int, str], tuple[Any, Provider | None, float]] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}

    async def get(self, app_pk: int, platform: str) -> Provider | None:
        key = (app_pk, platform)
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[2] < REFRESH_SECONDS:
            return entry[1]
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._refresh(key)

    async def _refresh(self, key: tuple[int, str]) -> Provider | None:
        app_pk, platform = key
        async with self.engine.connect() as conn:
            app = (await conn.execute(sa.select(apps).where(apps.c.pk == app_pk))).first()
        fingerprint = _fingerprint(app, platform)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == fingerprint:
            self._entries[key] = (fingerprint, entry[1], time.monotonic())
            return entry[1]
        if entry is not None and entry[1] is not None:
            await entry[1].aclose()
        provider = await self.factory(app, platform) if app is not None else None
        self._entries[key] = (fingerprint, provider, time.monotonic())
        return provider

    async def aclose(self) -> None:
        for _, provider, _ in self._entries.values():
            if provider is not None:
                await provider.aclose()
        self._entries.clear()


def _fingerprint(app: sa.Row[Any] | None, platform: str) -> Any:
    if app is None:
        return None
    return (getattr(app, CREDENTIAL_COLUMNS[platform]), app.webpush_subject if platform == "web" else None)


def stored_provider_factory(runtime: Any, **options: Any) -> ProviderFactory:
    """Providers built from the credentials the Apps API stored (helper: providers/factory.py)."""
    from clarion.domain.vapid import b64url
    from clarion.providers.factory import build_provider
    from clarion.store.apps import read_credentials, read_vapid_private_key

    async def make(app: sa.Row[Any], platform: str) -> Provider | None:
        if platform == "web":
            if not app.webpush_subject:
                return None
            vapid = b64url(read_vapid_private_key(runtime.box, app))
            credentials: dict[str, Any] | None = {"subject": app.webpush_subject, "vapid_private_key": vapid}
        else:
            credentials = read_credentials(runtime.box, app, "apns" if platform == "ios" else "fcm")
        if credentials is None:
            return None
        try:
            return build_provider(platform, credentials, runtime.settings, **options)  # type: ignore[arg-type]
        except ValueError:
            return None

    return make
