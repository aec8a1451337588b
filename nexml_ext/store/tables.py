"""The registry's tables: the only module that knows the relational schema.

Times are naive UTC ``DateTime`` columns (SQLite has no time zones; PostgreSQL keeps
microseconds), written by :func:`utcnow`. Rows that change state carry a ``revision`` column
that SQLAlchemy uses as an optimistic lock: an UPDATE that finds another writer got there first
matches no row and fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HASH = String(64)
NAME = String(64)


def utcnow() -> datetime:
    """Current UTC time, naive, microsecond precision (what every table stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    role: Mapped[str] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(NAME)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    secret_sha256: Mapped[str] = mapped_column(HASH)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(HASH, index=True)
    row_count: Mapped[int] = mapped_column(Integer)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_uri: Mapped[str | None] = mapped_column(Text)
    data_sha256: Mapped[str | None] = mapped_column(HASH)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    split: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)
    dataset: Mapped[Dataset] = relationship()


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    template: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    author: Mapped[str] = mapped_column(NAME)
    artifact_uri: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(HASH)
    flavour: Mapped[str | None] = mapped_column(String(32))
    problem_type: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    model: Mapped[Model] = relationship()
    __mapper_args__ = {"version_id_col": revision}


class Validation(Base):
    __tablename__ = "validations"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    artifact_sha256: Mapped[str] = mapped_column(HASH)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    status: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The platform-made validation report this validation's numbers come from (None for a
    # validation run in process); a report backs at most one validation (migration 0005).
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id"), index=True, unique=True
    )
    run_by: Mapped[str] = mapped_column(NAME)
    requested_by: Mapped[str | None] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ComplianceRecord(Base):
    __tablename__ = "compliance_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), unique=True)
    template: Mapped[str | None] = mapped_column(String(64))
    sections: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier_override: Mapped[int | None] = mapped_column(Integer)
    tier_reason: Mapped[str | None] = mapped_column(Text)
    tier_set_by: Mapped[str | None] = mapped_column(NAME)
    re_review: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(NAME)
    __mapper_args__ = {"version_id_col": revision}


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    findings: Mapped[str] = mapped_column(Text)
    approver: Mapped[str] = mapped_column(NAME)
    approver_role: Mapped[str] = mapped_column(String(32))
    artifact_sha256: Mapped[str] = mapped_column(HASH)
    validation_id: Mapped[int | None] = mapped_column(ForeignKey("validations.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    size: Mapped[str] = mapped_column(String(16), default="small")
    status: Mapped[str] = mapped_column(String(16), default="active")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    model_version: Mapped[ModelVersion] = relationship()
    __mapper_args__ = {"version_id_col": revision}


class Route(Base):
    __tablename__ = "routes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    rules: Mapped[list[Any]] = mapped_column(JSON, default=list)
    default_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    shadow_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    canary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    key_sha256: Mapped[str | None] = mapped_column(HASH)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)
    __mapper_args__ = {"version_id_col": revision}


class PredictionRecord(Base):
    __tablename__ = "prediction_records"
    __table_args__ = (UniqueConstraint("deployment_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    seq: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    subject_id: Mapped[str | None] = mapped_column(String(128), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    route: Mapped[str | None] = mapped_column(NAME)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    caller: Mapped[str | None] = mapped_column(NAME)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    artifact_sha256: Mapped[str] = mapped_column(HASH)
    rule: Mapped[str | None] = mapped_column(String(64))
    shadow: Mapped[bool] = mapped_column(Boolean, default=False)
    # Outcomes arrive later (performance monitoring) and are not part of the record's hash.
    outcome: Mapped[Any | None] = mapped_column(JSON)
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime)
    prev_hash: Mapped[str] = mapped_column(HASH)
    hash: Mapped[str] = mapped_column(HASH)


class Event(Base):
    """One link of the audit chain; see ``governance.audit`` for the hash format."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(NAME, index=True)
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    object_ref: Mapped[str] = mapped_column(String(200), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(HASH)
    hash: Mapped[str] = mapped_column(HASH)


class ChainHead(Base):
    """Last sequence number and hash of each chain; locked by whoever appends."""

    __tablename__ = "chain_heads"
    chain: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(HASH)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The job runner (nexml_ext/jobs): how often it may be started, which worker (host:pid)
    # holds it and when that worker last proved it is alive, and who asked to cancel it.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_requested_by: Mapped[str | None] = mapped_column(NAME)


class JobLog(Base):
    """A job's log, one row per line: only ever appended, each line in its own transaction."""

    __tablename__ = "job_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    line: Mapped[str] = mapped_column(Text)


class Report(Base):
    """A platform-made report: the executed notebook and its HTML (artifacts, by SHA-256), what
    it describes (subject, period) and the chain heads it shows.

    A row is written ``running`` when the run starts, holding the SHA-256 of the run's grant
    (the one-time, read-only authority its kernel opens the store with) until the run ends;
    then ``done`` with the artifacts and chain heads, or ``failed`` with the error.
    """

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    subject_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    notebook_uri: Mapped[str | None] = mapped_column(Text)
    notebook_sha256: Mapped[str | None] = mapped_column(HASH)
    html_uri: Mapped[str | None] = mapped_column(Text)
    html_sha256: Mapped[str | None] = mapped_column(HASH, index=True)
    chain_heads: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Added by migration 0004.
    status: Mapped[str] = mapped_column(String(16), default="running")
    period_start: Mapped[datetime | None] = mapped_column(DateTime)
    period_end: Mapped[datetime | None] = mapped_column(DateTime)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    grant_sha256: Mapped[str | None] = mapped_column(HASH)
    grant_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class Schedule(Base):
    """A cron schedule that submits a job of ``kind`` at each fire time (``nexml scheduler``).

    ``next_run_at`` (naive UTC) is the next fire time still owed; the scheduler advances it in
    the same transaction that submits the fire's job. ``catch_up`` says what a scheduler that was
    down does with several missed fire times: ``all`` (each its own job) or ``latest``.
    """

    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    catch_up: Mapped[str] = mapped_column(String(16), default="all")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))


class ScheduleRun(Base):
    """One fire time of one schedule, recorded once: the unique (schedule, fire time) pair is
    what makes two schedulers, or a restarted one, never submit the same fire twice."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id"), index=True)
    fire_at: Mapped[datetime] = mapped_column(DateTime)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    error: Mapped[str | None] = mapped_column(Text)
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # fires coalesced into this one
    submitted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    subject_ref: Mapped[str] = mapped_column(String(200), index=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_by: Mapped[str | None] = mapped_column(NAME)
    # Added by migration 0007 (monitoring): what breached, deduplicated per deployment, metric,
    # feature and window kind (one alert counts repeats), and who acknowledged it.
    monitor_id: Mapped[int | None] = mapped_column(ForeignKey("monitors.id"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"), index=True)
    metric: Mapped[str | None] = mapped_column(String(64))
    feature: Mapped[str | None] = mapped_column(String(200))
    window_kind: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    first_window_start: Mapped[datetime | None] = mapped_column(DateTime)
    last_window_start: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(NAME)
    ack_note: Mapped[str | None] = mapped_column(Text)


class Setting(Base):
    """Platform-wide configuration set at run time (e.g. the risk-tier policy)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(NAME)


# --- monitoring (migration 0007) -----------------------------------------------------------


class Monitor(Base):
    """A deployment enrolled for monitoring: which checks, on which window, with which
    threshold overrides (the rest come from the model's compliance template), where alerts go,
    and whether an alert asks for retraining from a labelled-data ``source``."""

    __tablename__ = "monitors"
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), unique=True)
    window_kind: Mapped[str] = mapped_column(String(16), default="weekly")
    checks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    segments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sinks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    retrain_on_alert: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(NAME)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    __mapper_args__ = {"version_id_col": revision}


class MonitorRun(Base):
    """One evaluation of one window of one monitor (a re-run of a window replaces its results)."""

    __tablename__ = "monitor_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id"), index=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    window_kind: Mapped[str] = mapped_column(String(16))
    window_start: Mapped[datetime] = mapped_column(DateTime)
    window_end: Mapped[datetime] = mapped_column(DateTime)
    rows: Mapped[int] = mapped_column(Integer)
    outcomes: Mapped[int] = mapped_column(Integer)
    breaches: Mapped[int] = mapped_column(Integer)
    alerts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    run_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MonitorResult(Base):
    """One point of a monitoring time series: a metric of one window, overall or for one
    feature, segment or protected group, against its threshold."""

    __tablename__ = "monitor_results"
    __table_args__ = (
        UniqueConstraint("deployment_id", "window_kind", "window_start", "metric", "feature"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("monitor_runs.id"), index=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    window_kind: Mapped[str] = mapped_column(String(16))
    window_start: Mapped[datetime] = mapped_column(DateTime, index=True)
    window_end: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(32))  # data_drift | prediction_drift | ...
    metric: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))  # overall | feature | segment | group
    feature: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str | None] = mapped_column(String(8))  # max | min
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    rows: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertSink(Base):
    """A named place alerts are sent to: webhook, email or log. Secrets are never stored:
    the config names the environment variable that holds one."""

    __tablename__ = "alert_sinks"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AlertDelivery(Base):
    """One attempt to send one alert to one sink, and how it went."""

    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    sink: Mapped[str] = mapped_column(NAME)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # sent | failed
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
