"""queue_jobs.claims: how many times the embedded broker has handed a job out

Revision ID: 9c2e51b7a3f4
Revises: 4d8a627fcd15
Create Date: 2026-11-25 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "9c2e51b7a3f4"
down_revision = "4d8a627fcd15"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("queue_jobs", schema=None) as batch_op:
        batch_op.drop_column("claims")
