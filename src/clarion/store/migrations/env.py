"""Alembic environment: always handed a live connection by clarion.store.migrate."""

from __future__ import annotations

from alembic import context

from clarion.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite can only ALTER by copying the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
