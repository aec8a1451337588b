"""reports: status, period, parameters, summary, the run's grant, finish time and error

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reports recorded before this revision (none were made: the table was reserved) count as
    # finished, with empty parameters and summary.
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="done")
        )
        batch_op.add_column(sa.Column("period_start", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("period_end", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("params", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(
            sa.Column("summary", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("grant_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("grant_expires_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_reports_html_sha256"), ["html_sha256"], unique=False)
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.alter_column("status", server_default=None)
        batch_op.alter_column("params", server_default=None)
        batch_op.alter_column("summary", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_html_sha256"))
        batch_op.drop_column("error")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("grant_expires_at")
        batch_op.drop_column("grant_sha256")
        batch_op.drop_column("summary")
        batch_op.drop_column("params")
        batch_op.drop_column("period_end")
        batch_op.drop_column("period_start")
        batch_op.drop_column("status")
