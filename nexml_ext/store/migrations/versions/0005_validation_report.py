"""validations: at most one validation per report, found by its report

The ``report_id`` column itself has existed since 0001 (reserved); a validation report now
records the validation it computed, so the column gets a unique index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("validations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_validations_report_id"), ["report_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("validations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_validations_report_id"))
