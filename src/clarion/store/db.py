"""Engine creation: one place that knows how each backend is tuned."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from clarion.config import Settings
from clarion.store.audience_sql import register_sqlite_functions


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for the configured database; SQLite gets WAL,
    `synchronous=FULL` (a 202 must survive power loss), foreign keys and
    `secure_delete` (GDPR erasure really removes the bytes)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer, and sessions that queue here
        # wait without polling, where several connections would contend for
        # the lock in SQLite's sleeping busy handler (measured: 2.2x the
        # requests/s at 16 concurrent device registrations).
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=120
        )
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        "secure_delete=ON",
        "busy_timeout=30000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
    register_sqlite_functions(dbapi_connection)  # segment filters' `near`
