"""prediction records: artifact hash, matched rule, shadow flag, outcomes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Records written before this revision have no artifact hash; '' marks them as such.
    with op.batch_alter_table("prediction_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifact_sha256", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("rule", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("outcome", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("outcome_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("prediction_records", schema=None) as batch_op:
        batch_op.alter_column("artifact_sha256", server_default=None)
        batch_op.alter_column("shadow", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("prediction_records", schema=None) as batch_op:
        batch_op.drop_column("outcome_at")
        batch_op.drop_column("outcome")
        batch_op.drop_column("shadow")
        batch_op.drop_column("rule")
        batch_op.drop_column("artifact_sha256")
