"""The migrations build exactly the schema tables.py describes, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from clarion.runtime import Runtime
from clarion.store.tables import metadata


def _differences(sync_conn: Any) -> list[Any]:
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_tables(runtime: Runtime) -> None:
    """`runtime` is migrated by Alembic (SQLite and PostgreSQL); nothing differs from tables.py."""
    async with runtime.engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []
