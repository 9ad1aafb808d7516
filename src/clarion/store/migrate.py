"""Schema migrations (Alembic), run on start and by `clarion migrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: command.upgrade(alembic_config(sync_conn), "head"))


async def autogenerate(engine: AsyncEngine, message: str) -> None:
    """For developers: write a new revision from the difference to tables.py."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync_conn: command.revision(alembic_config(sync_conn), message=message, autogenerate=True)
        )
