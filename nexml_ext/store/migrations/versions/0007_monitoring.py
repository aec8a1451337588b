"""monitoring: monitors, their runs and time series, alert sinks and deliveries; alerts gain
what breached, deduplication counts and acknowledgement

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_sinks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_sinks")),
        sa.UniqueConstraint("name", name=op.f("uq_alert_sinks_name")),
    )
    op.create_table(
        "monitors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("window_kind", sa.String(length=16), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("sinks", sa.JSON(), nullable=False),
        sa.Column("retrain_on_alert", sa.Boolean(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_monitors_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitors")),
        sa.UniqueConstraint("deployment_id", name=op.f("uq_monitors_deployment_id")),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("monitor_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("window_kind", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("outcomes", sa.Integer(), nullable=False),
        sa.Column("breaches", sa.Integer(), nullable=False),
        sa.Column("alerts", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("run_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_monitor_runs_deployment_id_deployments"),
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_monitor_runs_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_runs_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name=op.f("fk_monitor_runs_monitor_id_monitors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_runs")),
    )
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitor_runs_monitor_id"), ["monitor_id"], unique=False
        )

    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_deliveries_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_deliveries_alert_id"), ["alert_id"], unique=False
        )

    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("window_kind", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("feature", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_monitor_results_deployment_id_deployments"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["monitor_runs.id"], name=op.f("fk_monitor_results_run_id_monitor_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_results")),
        sa.UniqueConstraint(
            "deployment_id",
            "window_kind",
            "window_start",
            "metric",
            "feature",
            name=op.f("uq_monitor_results_deployment_id_window_kind_window_start_metric_feature"),
        ),
    )
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitor_results_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_monitor_results_window_start"), ["window_start"], unique=False
        )

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("monitor_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("deployment_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("metric", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("feature", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("window_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("value", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("first_seen_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("first_window_start", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_window_start", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ack_note", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_alerts_deployment_id"), ["deployment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alerts_monitor_id"), ["monitor_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_deployment_id_deployments"),
            "deployments",
            ["deployment_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_monitor_id_monitors"), "monitors", ["monitor_id"], ["id"]
        )
    # Alerts recorded before this revision (none were: the table was reserved) count once.
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("count", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_alerts_monitor_id_monitors"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_alerts_deployment_id_deployments"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_alerts_monitor_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_deployment_id"))
        batch_op.drop_column("ack_note")
        batch_op.drop_column("acknowledged_by")
        batch_op.drop_column("acknowledged_at")
        batch_op.drop_column("last_window_start")
        batch_op.drop_column("first_window_start")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("first_seen_at")
        batch_op.drop_column("count")
        batch_op.drop_column("threshold")
        batch_op.drop_column("value")
        batch_op.drop_column("window_kind")
        batch_op.drop_column("feature")
        batch_op.drop_column("metric")
        batch_op.drop_column("deployment_id")
        batch_op.drop_column("monitor_id")

    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_results_window_start"))
        batch_op.drop_index(batch_op.f("ix_monitor_results_run_id"))

    op.drop_table("monitor_results")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_alert_id"))

    op.drop_table("alert_deliveries")
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_runs_monitor_id"))

    op.drop_table("monitor_runs")
    op.drop_table("monitors")
    op.drop_table("alert_sinks")
