"""What the Workspace returns: plain, immutable snapshots of stored rows.

Surfaces (CLI, magics, widgets, REST) render these; they never see ORM objects or sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..governance.naming import format_ref
from ..store import tables as t


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, row: t.User) -> User:
        return cls(row.name, row.role, row.disabled, row.created_at, row.created_by)

    def _repr_html_(self) -> str:
        from ..jupyter.display import user_html

        return user_html(self)


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: t.Token) -> TokenInfo:
        return cls(row.id, row.user.name, row.label, row.created_at, row.expires_at, row.revoked_at)

    def _repr_html_(self) -> str:
        from ..jupyter.display import token_html

        return token_html(self)


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    content_sha256: str
    row_count: int
    schema: dict[str, Any]
    source: dict[str, Any]
    split: str | None
    data_uri: str | None
    created_at: datetime
    created_by: str
    id: int = field(repr=False, default=0)
    profile: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)

    @classmethod
    def of(cls, row: t.DatasetVersion) -> DatasetVersion:
        return cls(
            row.dataset.name,
            row.version,
            row.content_sha256,
            row.row_count,
            row.schema,
            row.source,
            row.split,
            row.data_uri,
            row.created_at,
            row.created_by,
            row.id,
            row.profile,
        )

    def _repr_html_(self) -> str:
        from ..jupyter.display import dataset_version_html

        return dataset_version_html(self)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    status: str
    author: str
    artifact_uri: str
    artifact_sha256: str
    flavour: str | None
    problem_type: str | None
    target: str | None
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    template: str | None = None
    id: int = field(repr=False, default=0)

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)

    @classmethod
    def of(cls, row: t.ModelVersion) -> ModelVersion:
        return cls(
            row.model.name,
            row.version,
            row.status,
            row.author,
            row.artifact_uri,
            row.artifact_sha256,
            row.flavour,
            row.problem_type,
            row.target,
            row.metrics,
            row.lineage,
            row.created_at,
            row.updated_at,
            row.model.template,
            row.id,
        )

    def _repr_html_(self) -> str:
        from ..jupyter.display import model_version_html

        return model_version_html(self)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    template: str | None
    versions: int
    latest: int
    latest_status: str
    deployed: tuple[str, ...]

    def _repr_html_(self) -> str:
        from ..jupyter.display import model_summary_html

        return model_summary_html(self)


@dataclass(frozen=True)
class Validation:
    id: int
    ref: str
    artifact_sha256: str
    dataset: str | None
    status: str
    metrics: dict[str, Any]
    run_by: str
    requested_by: str | None
    created_at: datetime
    details: dict[str, Any] = field(repr=False, default_factory=dict)
    #: The platform-made validation report these numbers come from (None: run in process).
    report_id: int | None = None

    def _repr_html_(self) -> str:
        from ..jupyter.display import validation_html

        return validation_html(self)


@dataclass(frozen=True)
class Approval:
    ref: str
    decision: str
    findings: str
    approver: str
    artifact_sha256: str
    created_at: datetime
    #: The platform validation an approval rests on, and the validation report it came from.
    validation_id: int | None = None
    report_id: int | None = None

    @classmethod
    def of(cls, ref: str, row: t.Approval, report_id: int | None = None) -> Approval:
        return cls(
            ref, row.decision, row.findings, row.approver, row.artifact_sha256, row.created_at,
            row.validation_id, report_id,
        )

    def _repr_html_(self) -> str:
        from ..jupyter.display import approval_html

        return approval_html(self)


@dataclass(frozen=True)
class Deployment:
    name: str
    model_ref: str
    size: str
    status: str
    created_by: str
    updated_at: datetime

    def _repr_html_(self) -> str:
        from ..jupyter.display import deployment_html

        return deployment_html(self)


@dataclass(frozen=True)
class Event:
    seq: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    object_ref: str
    data: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, row: t.Event) -> Event:
        return cls(
            row.seq,
            row.at,
            row.actor,
            row.actor_role,
            row.action,
            row.object_ref,
            row.data,
            row.hash,
        )

    def _repr_html_(self) -> str:
        from ..jupyter.display import event_html

        return event_html(self)


@dataclass(frozen=True)
class JobLogLine:
    at: datetime
    attempt: int  # 0: written before any worker started it
    line: str

    @classmethod
    def of(cls, row: t.JobLog) -> JobLogLine:
        return cls(row.at, row.attempt, row.line)

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} [{self.attempt}] {self.line}"


@dataclass(frozen=True)
class Job:
    """A job: ``queued → running → succeeded | failed | cancelled``. ``worker`` (host:pid) and
    ``heartbeat_at`` say who runs it and when it last proved alive; ``log`` holds the tail of
    its log when read with ``ws.job(id)`` (lists leave it empty)."""

    id: int
    kind: str
    status: str
    progress: float
    message: str
    params: dict[str, Any]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] = field(repr=False, default_factory=dict)
    error: str | None = None
    started_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 1
    worker: str | None = None
    heartbeat_at: datetime | None = None
    cancel_requested_by: str | None = None
    log: tuple[JobLogLine, ...] = field(repr=False, default=())

    @classmethod
    def of(cls, row: t.Job, log: tuple[JobLogLine, ...] = ()) -> Job:
        return cls(
            row.id,
            row.kind,
            row.status,
            row.progress,
            row.message,
            row.params,
            row.created_by,
            row.created_at,
            row.finished_at,
            row.result,
            row.error,
            row.started_at,
            row.attempts or 0,
            row.max_attempts or 1,
            row.worker,
            row.heartbeat_at,
            row.cancel_requested_by,
            log,
        )

    def _repr_html_(self) -> str:
        from ..jupyter.display import job_html

        return job_html(self)


@dataclass(frozen=True)
class Route:
    """A stored route: its spec (rules, default, canary, shadow) and who made it. The key is
    never part of it; only its hash is stored."""

    name: str
    rules: tuple[dict[str, Any], ...]
    default: str
    canary: dict[str, Any] | None
    shadow: str | None
    revision: int
    created_at: datetime
    created_by: str

    @property
    def spec(self) -> dict[str, Any]:
        """The route as the spec dict ``set_route`` accepts (and the YAML a person writes)."""
        return {
            "rules": [dict(r) for r in self.rules],
            "default": self.default,
            "canary": dict(self.canary) if self.canary else None,
            "shadow": self.shadow,
        }


@dataclass(frozen=True)
class Decision:
    """One recorded prediction: what was decided, by which exact model, why, and its chain link.

    ``link_verified`` is whether this record's hash recomputes and follows its predecessor's
    (None when the record was just written: the commit itself is the proof).
    """

    request_id: str
    subject_id: str | None
    deployment: str
    model_ref: str
    artifact_sha256: str
    at: datetime
    inputs: dict[str, Any]
    output: dict[str, Any]
    prediction: Any
    score: float | None
    reasons: list[dict[str, Any]]
    explanation: dict[str, Any] = field(repr=False)
    latency_ms: float | None
    seq: int
    prev_hash: str = field(repr=False)
    hash: str
    route: str | None = None
    rule: str | None = None
    shadow: bool = False
    caller: str | None = None
    confidence: float | None = None
    link_verified: bool | None = None
    outcome: Any = None
    outcome_at: datetime | None = None

    @property
    def chain(self) -> str:
        return f"predictions:{self.deployment}"

    @property
    def proof(self) -> str:
        """The chain proof in one line: which record of which chain, its hash, the check."""
        state = {True: "link verified", False: "LINK BROKEN", None: "committed"}
        return (
            f"record {self.seq} of {self.chain}, hash {self.hash[:16]}…, "
            f"{state[self.link_verified]}"
        )


@dataclass(frozen=True)
class Report:
    """A platform-made report: what it describes, its artifacts' SHA-256s and the chain heads
    it shows. ``status`` is running, done, failed, or abandoned (a run whose time ran out
    without finishing, e.g. its process was killed)."""

    id: int
    kind: str
    title: str
    subject: str | None
    period_start: datetime | None
    period_end: datetime | None
    status: str
    html_sha256: str | None
    notebook_sha256: str | None
    chain_heads: dict[str, Any]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    error: str | None = None
    job_id: int | None = None
    params: dict[str, Any] = field(repr=False, default_factory=dict)
    summary: dict[str, Any] = field(repr=False, default_factory=dict)
    html_uri: str | None = field(repr=False, default=None)
    notebook_uri: str | None = field(repr=False, default=None)

    @property
    def period(self) -> str:
        """``YYYY-MM-DD to YYYY-MM-DD`` (UTC, inclusive), or "" for a report with no period."""
        if self.period_start is None or self.period_end is None:
            return ""
        return f"{self.period_start:%Y-%m-%d} to {self.period_end:%Y-%m-%d}"

    @classmethod
    def of(cls, row: t.Report) -> Report:
        status = row.status
        if status == "running" and row.grant_expires_at and row.grant_expires_at <= t.utcnow():
            status = "abandoned"
        return cls(
            row.id,
            row.kind,
            row.title,
            row.subject_ref,
            row.period_start,
            row.period_end,
            status,
            row.html_sha256,
            row.notebook_sha256,
            row.chain_heads or {},
            row.created_by,
            row.created_at,
            row.finished_at,
            row.error,
            row.job_id,
            row.params or {},
            row.summary or {},
            row.html_uri,
            row.notebook_uri,
        )
