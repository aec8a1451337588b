"""Use cases for monitoring deployments: enrol, run over windows, read the time series, alerts.

A manager enrols a deployment (``monitor.enrol``); its thresholds are the model's compliance
template's, overridden name by name at enrolment. ``run_monitor`` evaluates every complete
window (daily, weekly or monthly, UTC) not yet evaluated up to ``until``: it reads the window's
recorded decisions of the version the deployment serves, measures them (``monitoring/checks``),
stores the measurements as a time series and raises, counts or resolves alerts, each window in
one transaction with its events. A new alert is also a re-review trigger on the version's
compliance record (an event on the version, so the record's change history shows it), is sent
to the monitor's sinks, and, when the monitor says so, asks for a retraining job.

"Now" — for decisions, outcomes and monitors — is ``WorkspaceCore._now``: the system clock, or
a clock a superadmin set with :meth:`MonitoringMixin.set_clock` for a simulation (an event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select

from ..errors import Conflict, InvalidInput, InvalidTransition, NexmlError, NotFound
from ..governance import compliance as policy
from ..governance.naming import check_name, format_ref
from ..monitoring import alerts as alerting
from ..monitoring import thresholds as limits
from ..monitoring import windows as win
from ..monitoring.checks import CHECKS, Measurement, Reference, WindowData, check_checks, measure
from ..store import tables as t
from .core import WorkspaceCore

RETRAIN_KIND = "retrain"
_SEGMENT_LENGTH = 64


# --- views ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Monitor:
    """A deployment's monitor: its configuration and the thresholds in force."""

    deployment: str
    model_ref: str
    window: str
    checks: tuple[str, ...]
    thresholds: dict[str, float]  # the overrides given at enrolment
    effective_thresholds: dict[str, float]  # defaults < template < overrides
    segments: tuple[str, ...]
    sinks: tuple[str, ...]
    retrain_on_alert: bool
    source: Any
    enabled: bool
    created_by: str
    created_at: datetime
    last_window_end: datetime | None
    open_alerts: int


@dataclass(frozen=True)
class MonitorRun:
    """One evaluated window."""

    id: int
    deployment: str
    model_ref: str
    window: str
    window_start: datetime
    window_end: datetime
    rows: int
    outcomes: int
    breaches: int
    alerts: tuple[int, ...]  # alerts raised or counted by this window
    run_by: str
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorResult:
    """One point of a monitoring time series."""

    deployment: str
    window: str
    window_start: datetime
    window_end: datetime
    kind: str  # data_drift | prediction_drift | performance | health
    metric: str
    scope: str  # overall | feature | segment | group
    feature: str  # "" overall, a column, or "column=segment"
    value: float | None
    threshold: float | None
    direction: str | None  # at (>=), max (>), min (<) is a breach
    breached: bool
    rows: int
    details: dict[str, Any]
    run_id: int


@dataclass(frozen=True)
class Alert:
    """A deduplicated alert: one per deployment, metric, feature and window kind while it
    lasts; ``count`` windows breached so far."""

    id: int
    deployment: str | None
    kind: str
    severity: str
    metric: str | None
    feature: str
    window: str | None
    value: float | None
    threshold: float | None
    message: str
    status: str  # open | acknowledged | resolved
    count: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    first_window_start: datetime | None
    last_window_start: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str | None
    resolved_at: datetime | None
    data: dict[str, Any]

    @classmethod
    def of(cls, row: t.Alert, deployment: str | None) -> Alert:
        return cls(
            row.id, deployment, row.kind, row.severity, row.metric, row.feature or "",
            row.window_kind, row.value, row.threshold, row.message, row.status, row.count,
            row.first_seen_at, row.last_seen_at, row.first_window_start, row.last_window_start,
            row.acknowledged_by, row.acknowledged_at, row.ack_note, row.resolved_at,
            dict(row.data or {}),
        )


@dataclass(frozen=True)
class AlertSink:
    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: datetime


# --- the mixin --------------------------------------------------------------------------------


class MonitoringMixin(WorkspaceCore):
    # --- simulated time -----------------------------------------------------------------------

    def set_clock(self, clock: Callable[[], datetime] | None) -> None:
        """Take "now" from ``clock`` (a callable returning a UTC datetime) for this workspace's
        decisions, outcomes and monitors — a simulation's time — or from the system again
        (None). Superadmins only (``clock.simulate``); recorded as an event naming both times,
        so backdated decisions are visible in the chain. The gateway never has a clock: each
        server process opens its own Workspace and nothing over HTTP can set one."""
        self._authorize("clock.simulate", "this workspace's clock")
        if clock is not None and not callable(clock):
            raise InvalidInput("the clock must be a callable returning a datetime, or None")
        before = self._now()
        self._clock = clock
        try:
            now = self._now()
            if not isinstance(now, datetime):
                raise InvalidInput(f"the clock must return a datetime, got {type(now).__name__}")
            with self._write() as s:
                self._event(s, "clock.simulate", "clock", system=t.utcnow().isoformat(),
                            before=before.isoformat(), now=now.isoformat(),
                            simulated=clock is not None)
        except BaseException:
            self._clock = None
            raise

    # --- enrolment ------------------------------------------------------------------------------

    def enrol_monitor(
        self,
        deployment: str,
        *,
        window: str = "weekly",
        checks: Iterable[str] | str = CHECKS,
        thresholds: dict[str, Any] | None = None,
        segments: Iterable[str] = (),
        sinks: Iterable[str] = (),
        retrain_on_alert: bool = False,
        source: Any = None,
        replace: bool = False,
    ) -> Monitor:
        """Enrol deployment ``deployment`` for monitoring (managers), or change its monitor
        with ``replace=True``.

        ``window``: daily, weekly or monthly; ``checks``: any of data_drift, prediction_drift,
        performance, health; ``thresholds``: overrides of the template's (psi_alert, auc_min,
        max_performance_drop ... and monitoring's own: min_rows, min_outcomes, latency_p95_ms_max,
        traffic_min, accuracy_min ...); ``segments``: columns to break performance down by
        (protected attributes always are); ``sinks``: names of alert sinks; ``retrain_on_alert``
        with ``source`` (the labelled-data source a retraining job reads) asks for a ``retrain``
        job when an alert is raised. Raises PermissionDenied, NotFound, InvalidInput, Conflict.
        """
        self._authorize("monitor.enrol", f"deployment {deployment}")
        window = win.check_kind(window)
        chosen = check_checks(checks)
        overrides = limits.check_overrides(thresholds)
        segment_names = _segments(segments)
        sink_names = tuple(dict.fromkeys(check_name("alert sink", n) for n in sinks))
        if not isinstance(retrain_on_alert, bool):
            raise InvalidInput(f"retrain_on_alert must be true or false, got {retrain_on_alert!r}")
        if source is not None and not (
            (isinstance(source, str) and source.strip()) or isinstance(source, dict)
        ):
            raise InvalidInput("source must be a path, URL or query spec (text or a mapping)")
        if retrain_on_alert and source is None:
            raise InvalidInput(
                f"cannot enrol {deployment} with retrain_on_alert: give the labelled-data source "
                "the retraining job reads (source=...)"
            )
        with self._write() as s:
            dep = _deployment_row(s, deployment)
            if dep.status != "active":
                raise InvalidTransition(f"cannot monitor {deployment}: it is {dep.status}")
            template = s.get(t.Model, dep.model_id).template
            limits.resolve(_template_thresholds(template), overrides)  # psi order
            missing = [
                n for n in sink_names
                if s.scalars(select(t.AlertSink.id).where(t.AlertSink.name == n)).first() is None
            ]
            if missing:
                raise NotFound(f"no alert sink named {', '.join(missing)} (add it first: "
                               "nexml alert-sink add)")
            row = s.scalars(
                select(t.Monitor).where(t.Monitor.deployment_id == dep.id).with_for_update()
            ).first()
            config = {
                "window_kind": window,
                "checks": list(chosen),
                "thresholds": overrides,
                "segments": list(segment_names),
                "sinks": list(sink_names),
                "retrain_on_alert": retrain_on_alert,
                "source": None if source is None else {"spec": source},
                "enabled": True,
            }
            if row is None:
                row = t.Monitor(deployment_id=dep.id, created_by=self.principal.name, **config)
                s.add(row)
                s.flush()
                self._event(s, "monitor.enrol", f"monitor:{deployment}", **_jsonable(config))
            elif not replace and row.enabled:
                raise Conflict(
                    f"{deployment} is already enrolled for monitoring (by {row.created_by}); "
                    "pass replace=True (--replace) to change its monitor"
                )
            else:
                before = {k: getattr(row, k) for k in config}
                for key, value in config.items():
                    setattr(row, key, value)
                row.updated_by = self.principal.name
                s.flush()
                self._event(s, "monitor.update", f"monitor:{deployment}",
                            before=_jsonable(before), after=_jsonable(config))
            return self._monitor_view(s, row, dep)

    def disable_monitor(self, deployment: str) -> Monitor:
        """Stop monitoring ``deployment`` (managers); its time series and alerts stay."""
        self._authorize("monitor.enrol", f"deployment {deployment}")
        with self._write() as s:
            dep = _deployment_row(s, deployment)
            row = _monitor_row(s, dep, lock=True)
            if not row.enabled:
                raise InvalidTransition(f"the monitor of {deployment} is already disabled")
            row.enabled = False
            row.updated_by = self.principal.name
            s.flush()
            self._event(s, "monitor.disable", f"monitor:{deployment}")
            return self._monitor_view(s, row, dep)

    def monitors(self) -> list[Monitor]:
        """Every enrolled deployment's monitor, by deployment name."""
        self._authorize("monitor.view", "monitors")
        with self._read() as s:
            rows = s.execute(
                select(t.Monitor, t.Deployment)
                .join(t.Deployment, t.Deployment.id == t.Monitor.deployment_id)
                .order_by(t.Deployment.name)
            ).all()
            return [self._monitor_view(s, m, d) for m, d in rows]

    def monitor(self, deployment: str) -> Monitor:
        """The monitor of ``deployment``; NotFound if it is not enrolled."""
        self._authorize("monitor.view", f"deployment {deployment}")
        with self._read() as s:
            dep = _deployment_row(s, deployment)
            return self._monitor_view(s, _monitor_row(s, dep), dep)

    # --- running ------------------------------------------------------------------------------

    def run_monitor(
        self,
        deployment: str,
        *,
        window: str | None = None,
        until: datetime | date | str | None = None,
        since: datetime | date | str | None = None,
        job_id: int | None = None,
    ) -> list[MonitorRun]:
        """Evaluate every complete ``window`` (default: the monitor's) of ``deployment`` that
        ends by ``until`` (default and at most: now) and was not evaluated yet — or, with
        ``since``, every one from the window holding ``since`` (re-evaluating replaces a
        window's results). Returns the windows evaluated, oldest first.

        Reads the decisions of the version the deployment serves now; a window without any
        is measured as zero traffic. Each window is one transaction: its results, alerts raised,
        counted or resolved, re-review triggers and a ``monitor.run`` event; then new alerts
        go to the sinks, and a retraining job is asked for if the monitor says so.
        Raises PermissionDenied, NotFound (deployment, monitor), InvalidInput, InvalidTransition.
        """
        self._authorize("monitor.run", f"deployment {deployment}")
        now = self._now()
        end = win.parse_moment(until, "until") or now
        end = min(end, now)
        start = win.parse_moment(since, "since")
        with self._read() as s:
            dep = _deployment_row(s, deployment)
            mon = _monitor_row(s, dep)
            if not mon.enabled:
                raise InvalidTransition(f"the monitor of {deployment} is disabled")
            kind = win.check_kind(window or mon.window_kind)
            version_id = dep.model_version_id
            if start is None:
                last = s.scalar(
                    select(func.max(t.MonitorRun.window_end)).where(
                        t.MonitorRun.monitor_id == mon.id, t.MonitorRun.window_kind == kind
                    )
                )
                start = last or s.scalar(
                    select(func.min(t.PredictionRecord.at)).where(
                        t.PredictionRecord.deployment_id == dep.id,
                        t.PredictionRecord.model_version_id == version_id,
                    )
                )
        if start is None:  # nothing recorded yet: nothing to judge
            return []
        todo = list(win.complete_windows(kind, start, end))
        if not todo:
            return []
        reference, thresholds, context = self._monitor_reference(deployment)
        runs = []
        for window_ in todo:
            data = self._window_data(context["deployment_id"], version_id, window_)
            measured = measure(context["checks"], data, reference, thresholds)
            run, raised = self._record_window(
                deployment, context, window_, data, measured, job_id
            )
            runs.append(run)
            if raised:
                self._deliver(deployment, context, raised)
                self._ask_retrain(deployment, context, raised)
        return runs

    def monitor_results(
        self,
        deployment: str,
        *,
        metric: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        window: str | None = None,
        kind: str | None = None,
    ) -> list[MonitorResult]:
        """The time series of ``deployment``'s monitor: every stored measurement (optionally
        one ``metric``, one check ``kind``, one ``window`` kind, windows starting from
        ``since`` and ending by ``until``), by window start, then kind, metric and feature."""
        self._authorize("monitor.view", f"deployment {deployment}")
        R = t.MonitorResult
        first = win.parse_moment(since, "since")
        last = win.parse_moment(until, "until")
        with self._read() as s:
            dep = _deployment_row(s, deployment)
            query = select(R).where(R.deployment_id == dep.id)
            if metric:
                query = query.where(R.metric == metric)
            if kind:
                query = query.where(R.kind == kind)
            if window:
                query = query.where(R.window_kind == win.check_kind(window))
            if first is not None:
                query = query.where(R.window_start >= first)
            if last is not None:
                query = query.where(R.window_end <= last)
            query = query.order_by(R.window_start, R.window_kind, R.kind, R.metric, R.feature)
            return [
                MonitorResult(
                    deployment, r.window_kind, r.window_start, r.window_end, r.kind, r.metric,
                    r.scope, r.feature, r.value, r.threshold, r.direction, r.breached, r.rows,
                    dict(r.details or {}), r.run_id,
                )
                for r in s.scalars(query)
            ]

    def monitor_runs(self, deployment: str, *, limit: int = 100) -> list[MonitorRun]:
        """The latest evaluated windows of ``deployment``'s monitor, oldest first."""
        self._authorize("monitor.view", f"deployment {deployment}")
        with self._read() as s:
            dep = _deployment_row(s, deployment)
            rows = list(
                s.scalars(
                    select(t.MonitorRun)
                    .where(t.MonitorRun.deployment_id == dep.id)
                    .order_by(t.MonitorRun.id.desc())
                    .limit(limit)
                )
            )
            return [_run_view(s, r, deployment) for r in reversed(rows)]

    # --- alerts -------------------------------------------------------------------------------

    def alerts(self, *, status: str = "open", deployment: str | None = None) -> list[Alert]:
        """Alerts, newest first: ``open``, ``acknowledged``, ``resolved`` or ``all``."""
        self._authorize("alert.view", "alerts")
        if status not in (*alerting.STATUSES, "all"):
            raise InvalidInput(
                f"unknown alert status {status!r}: choose {', '.join(alerting.STATUSES)} or all"
            )
        with self._read() as s:
            query = (
                select(t.Alert, t.Deployment.name)
                .outerjoin(t.Deployment, t.Deployment.id == t.Alert.deployment_id)
                .order_by(t.Alert.id.desc())
            )
            if status != "all":
                query = query.where(t.Alert.status == status)
            if deployment:
                query = query.where(t.Alert.deployment_id == _deployment_row(s, deployment).id)
            return [Alert.of(a, name) for a, name in s.execute(query)]

    def alert(self, alert_id: int) -> Alert:
        self._authorize("alert.view", f"alert {alert_id}")
        with self._read() as s:
            row = _alert_row(s, alert_id)
            return Alert.of(row, _deployment_name(s, row.deployment_id))

    def acknowledge_alert(self, alert_id: int, *, note: str) -> Alert:
        """Acknowledge an open alert with a written note (managers, compliance officers,
        superadmins): an audited event. Raises PermissionDenied, NotFound, InvalidInput (no
        note), InvalidTransition (already acknowledged or resolved)."""
        self._authorize("alert.acknowledge", f"alert {alert_id}")
        note = (note or "").strip() if isinstance(note, str) else ""
        if not note:
            raise InvalidInput(f"cannot acknowledge alert {alert_id}: write a note (what was done)")
        with self._write() as s:
            row = _alert_row(s, alert_id, lock=True)
            if row.status == "acknowledged":
                raise InvalidTransition(
                    f"alert {alert_id} was already acknowledged by {row.acknowledged_by} at "
                    f"{row.acknowledged_at:%Y-%m-%d %H:%M} UTC"
                )
            if row.status != "open":
                raise InvalidTransition(f"cannot acknowledge alert {alert_id}: it is {row.status}")
            row.status = "acknowledged"
            row.acknowledged_by = self.principal.name
            row.acknowledged_at = self._now()
            row.ack_note = note
            s.flush()
            self._event(s, "alert.acknowledge", f"alert:{alert_id}", note=note,
                        metric=row.metric, feature=row.feature or "", count=row.count)
            return Alert.of(row, _deployment_name(s, row.deployment_id))

    # --- sinks --------------------------------------------------------------------------------

    def add_alert_sink(self, name: str, kind: str, config: dict[str, Any]) -> AlertSink:
        """Add a named alert sink: ``webhook`` (url, optional secret_env for an HMAC signature),
        ``email`` (SMTP host, port, from, to, optional user and password_env) or ``log``.
        Secrets are never stored: the config names the environment variable holding one.
        Raises PermissionDenied, InvalidInput (naming the bad field), Conflict."""
        self._authorize("alert.configure", f"alert sink {name}")
        check_name("alert sink", name)
        clean = _sinks().validate_sink(kind, config)
        with self._write() as s:
            if s.scalars(select(t.AlertSink).where(t.AlertSink.name == name)).first():
                raise Conflict(f"an alert sink named {name} already exists")
            row = t.AlertSink(name=name, kind=kind, config=clean, created_by=self.principal.name)
            s.add(row)
            s.flush()
            self._event(s, "alert_sink.add", f"alert_sink:{name}", kind=kind,
                        config=_shown_config(clean))
            return _sink_view(row)

    def alert_sinks(self) -> list[AlertSink]:
        """Every alert sink (their configs name URLs and addresses: alert.configure)."""
        self._authorize("alert.configure", "alert sinks")
        with self._read() as s:
            rows = s.scalars(select(t.AlertSink).order_by(t.AlertSink.name))
            return [_sink_view(r) for r in rows]

    def remove_alert_sink(self, name: str) -> AlertSink:
        """Remove an alert sink no enabled monitor sends to."""
        self._authorize("alert.configure", f"alert sink {name}")
        with self._write() as s:
            row = s.scalars(select(t.AlertSink).where(t.AlertSink.name == name)).first()
            if row is None:
                raise NotFound(f"no alert sink named {name}")
            users = [
                d for m, d in s.execute(
                    select(t.Monitor, t.Deployment.name)
                    .join(t.Deployment, t.Deployment.id == t.Monitor.deployment_id)
                    .where(t.Monitor.enabled.is_(True))
                )
                if name in (m.sinks or [])
            ]
            if users:
                raise InvalidTransition(
                    f"cannot remove alert sink {name}: the monitors of {', '.join(users)} send "
                    "to it (enrol them again without it first)"
                )
            view = _sink_view(row)
            s.delete(row)
            self._event(s, "alert_sink.remove", f"alert_sink:{name}", kind=row.kind)
            return view

    # --- internals ----------------------------------------------------------------------------

    def _monitor_view(self, s, row: t.Monitor, dep: t.Deployment) -> Monitor:
        mv = dep.model_version
        template = mv.model.template
        last = s.scalar(
            select(func.max(t.MonitorRun.window_end)).where(
                t.MonitorRun.monitor_id == row.id, t.MonitorRun.window_kind == row.window_kind
            )
        )
        open_alerts = s.scalar(
            select(func.count(t.Alert.id)).where(
                t.Alert.monitor_id == row.id, t.Alert.status.in_(alerting.ACTIVE)
            )
        )
        return Monitor(
            dep.name,
            format_ref(mv.model.name, mv.version),
            row.window_kind,
            tuple(row.checks or ()),
            dict(row.thresholds or {}),
            limits.resolve(_template_thresholds(template), row.thresholds),
            tuple(row.segments or ()),
            tuple(row.sinks or ()),
            row.retrain_on_alert,
            (row.source or {}).get("spec"),
            row.enabled,
            row.created_by,
            row.created_at,
            last,
            int(open_alerts or 0),
        )

    def _monitor_reference(self, deployment: str) -> tuple[Reference, dict[str, float], dict]:
        """The served version's references, the thresholds in force and the monitor's context
        (read as the platform: the training profile and the model are not the caller's reads)."""
        from ..ml.profile import profile
        from ..ml.validation import cutoff_of
        from .training import protected_columns

        platform = self._as_platform()
        with self._read() as s:
            dep = _deployment_row(s, deployment)
            mon = _monitor_row(s, dep)
            mv = dep.model_version
            ref = format_ref(mv.model.name, mv.version)
            template = mv.model.template
            baseline = self._baseline_profile(s, mv)  # type: ignore[attr-defined]
            validated = s.scalars(
                select(t.Validation)
                .where(t.Validation.model_version_id == mv.id,
                       t.Validation.artifact_sha256 == mv.artifact_sha256)
                .order_by(t.Validation.id.desc())
            ).first()
            training = ((mv.lineage or {}).get("datasets") or [{}])[0].get("ref")
            protected = protected_columns(mv.lineage, template)
            context = {
                "monitor_id": mon.id,
                "deployment_id": dep.id,
                "version_id": mv.id,
                "model_ref": ref,
                "checks": tuple(mon.checks or CHECKS),
                "segments": tuple(mon.segments or ()),
                "sinks": tuple(mon.sinks or ()),
                "retrain_on_alert": mon.retrain_on_alert,
                "source": (mon.source or {}).get("spec"),
                "created_by": mon.created_by,
            }
            thresholds = limits.resolve(_template_thresholds(template), mon.thresholds)
        model = platform._load_model(ref)  # type: ignore[attr-defined]
        details = validated.details if validated is not None else {}
        score_baseline = ((details.get("score_profile") or {}).get("columns") or {}).get("score")
        binary = model.problem_type == "binary"
        if score_baseline is None and binary and training:
            frame = platform.load_dataset(training)  # type: ignore[attr-defined]
            scores = model.score(frame[[c for c in model.input_columns if c in frame.columns]])
            score_baseline = profile(_frame({"score": list(map(float, scores))}))["columns"][
                "score"
            ]
        classes = list(model.classes or []) if binary else []
        reference = Reference(
            problem_type=model.problem_type,
            input_columns=tuple(model.input_columns),
            baseline=baseline,
            score_baseline=score_baseline,
            positive_label=classes[1] if binary else None,
            negative_label=classes[0] if binary else None,
            cutoff=cutoff_of(model) if binary else None,
            validated_auc=(validated.metrics or {}).get("roc_auc") if validated else None,
            protected=tuple(protected),
            segments=context["segments"],
        )
        return reference, thresholds, context

    def _window_data(self, deployment_id: int, version_id: int, window: win.Window) -> WindowData:
        P = t.PredictionRecord
        with self._read() as s:
            rows = s.execute(
                select(P.inputs, P.output, P.latency_ms, P.outcome)
                .where(
                    P.deployment_id == deployment_id,
                    P.model_version_id == version_id,
                    P.at >= window.start,
                    P.at < window.end,
                )
                .order_by(P.id)
            ).all()
        return WindowData(
            inputs=_frame([r.inputs for r in rows]),
            scores=[(r.output or {}).get("score") for r in rows],
            latency_ms=[r.latency_ms for r in rows],
            outcomes=[r.outcome for r in rows],
        )

    def _record_window(
        self,
        deployment: str,
        context: dict[str, Any],
        window: win.Window,
        data: WindowData,
        measured: list[Measurement],
        job_id: int | None,
    ) -> tuple[MonitorRun, list[int]]:
        """Store one window's results and alerts with their events; returns the run and the ids
        of the alerts it raised."""
        now = self._now()
        R = t.MonitorResult
        breached = [m for m in measured if m.breached]
        outcomes = next((int(m.value or 0) for m in measured if m.metric == "outcomes"), 0)
        with self._write() as s:
            mon = s.get(t.Monitor, context["monitor_id"], with_for_update=True)
            if mon is None or not mon.enabled:
                raise InvalidTransition(f"the monitor of {deployment} was disabled meanwhile")
            s.execute(
                delete(R).where(
                    R.deployment_id == context["deployment_id"],
                    R.window_kind == window.kind,
                    R.window_start == window.start,
                )
            )
            run = t.MonitorRun(
                monitor_id=mon.id, deployment_id=context["deployment_id"],
                model_version_id=context["version_id"], window_kind=window.kind,
                window_start=window.start, window_end=window.end, rows=len(data.inputs),
                outcomes=outcomes, breaches=len(breached), alerts=[],
                details={"checks": list(context["checks"])}, job_id=job_id,
                run_by=self.principal.name,
            )
            s.add(run)
            s.flush()
            s.add_all(
                R(
                    run_id=run.id, deployment_id=context["deployment_id"],
                    window_kind=window.kind, window_start=window.start, window_end=window.end,
                    kind=m.kind, metric=m.metric, scope=m.scope, feature=m.feature,
                    value=m.value, threshold=m.threshold, direction=m.direction,
                    breached=m.breached, rows=m.rows, details=_jsonable(m.details),
                )
                for m in measured
            )
            raised, counted, resolved = self._judge_alerts(
                s, deployment, context, window, measured, now
            )
            run.alerts = raised + counted
            s.flush()
            self._event(
                s, "monitor.run", f"monitor:{deployment}", run=run.id, model=context["model_ref"],
                window=window.kind, start=window.start.isoformat(), end=window.end.isoformat(),
                rows=run.rows, outcomes=outcomes,
                breaches=[f"{m.metric}:{m.feature}" if m.feature else m.metric for m in breached],
                raised=raised, counted=counted, resolved=resolved, job=job_id,
            )
            return _run_view(s, run, deployment), raised

    def _judge_alerts(
        self, s, deployment: str, context: dict[str, Any], window: win.Window,
        measured: list[Measurement], now: datetime,
    ) -> tuple[list[int], list[int], list[int]]:
        A = t.Alert
        raised: list[int] = []
        counted: list[int] = []
        resolved: list[int] = []
        for m in measured:
            if not m.judged:
                continue
            active = s.scalars(
                select(A)
                .where(
                    A.deployment_id == context["deployment_id"], A.metric == m.metric,
                    A.feature == m.feature, A.window_kind == window.kind,
                    A.status.in_(alerting.ACTIVE),
                )
                .order_by(A.id.desc())
                .with_for_update()
            ).first()
            later = active is not None and (
                active.last_window_start is None or window.start > active.last_window_start
            )
            if m.breached and active is not None:
                if later:
                    active.count += 1
                    active.last_window_start = window.start
                    active.last_seen_at = now
                if later or window.start == active.last_window_start:
                    active.value, active.threshold = m.value, m.threshold
                    active.message = alerting.message(deployment, m, window)
                counted.append(active.id)
            elif m.breached:
                raised.append(self._raise_alert(s, deployment, context, window, m, now))
            elif active is not None and later:
                active.status = "resolved"
                active.resolved_at = now
                active.resolved_by = self.principal.name
                s.flush()
                self._event(s, "alert.resolve", f"alert:{active.id}", metric=m.metric,
                            feature=m.feature, value=m.value, threshold=m.threshold,
                            window=window.kind, start=window.start.isoformat())
                resolved.append(active.id)
        return raised, counted, resolved

    def _raise_alert(
        self, s, deployment: str, context: dict[str, Any], window: win.Window, m: Measurement,
        now: datetime,
    ) -> int:
        data: dict[str, Any] = {"model": context["model_ref"], "rows": m.rows,
                                "details": _jsonable(m.details)}
        trigger = alerting.RE_REVIEW_TRIGGER.get(m.kind)
        if trigger is not None:
            record = s.scalars(
                select(t.ComplianceRecord).where(
                    t.ComplianceRecord.model_version_id == context["version_id"]
                )
            ).first()
            from .compliance import DEFAULT_RE_REVIEW

            triggers = {**DEFAULT_RE_REVIEW, **((record.re_review if record else None) or {})}
            data["re_review"] = trigger if triggers.get(trigger) else None
        row = t.Alert(
            kind=m.kind, severity=alerting.severity(m), subject_ref=f"deployment:{deployment}",
            message=alerting.message(deployment, m, window), data=data, status="open",
            created_at=now, monitor_id=context["monitor_id"],
            deployment_id=context["deployment_id"], metric=m.metric, feature=m.feature,
            window_kind=window.kind, value=m.value, threshold=m.threshold, count=1,
            first_seen_at=now, last_seen_at=now, first_window_start=window.start,
            last_window_start=window.start,
        )
        s.add(row)
        s.flush()
        self._event(s, "alert.raise", f"alert:{row.id}", deployment=deployment,
                    model=context["model_ref"], kind=m.kind, metric=m.metric, feature=m.feature,
                    value=m.value, threshold=m.threshold, window=window.kind,
                    start=window.start.isoformat(), severity=row.severity)
        if data.get("re_review"):
            # On the version itself, so its compliance record's change history shows it.
            self._event(s, "compliance.re_review", context["model_ref"],
                        trigger=data["re_review"], alert=row.id, deployment=deployment,
                        metric=m.metric, feature=m.feature, value=m.value,
                        threshold=m.threshold, window=window.kind,
                        start=window.start.isoformat())
        return row.id

    def _deliver(self, deployment: str, context: dict[str, Any], raised: list[int]) -> None:
        """Send each new alert to the monitor's sinks; each attempt is stored and an event.
        A sink that fails does not stop the others or the monitor."""
        if not context["sinks"]:
            return
        with self._read() as s:
            sinks = {
                r.name: (r.kind, dict(r.config or {}), r.enabled)
                for r in s.scalars(
                    select(t.AlertSink).where(t.AlertSink.name.in_(context["sinks"]))
                )
            }
            payloads = [
                alerting.payload(_alert_row(s, i), deployment, context["model_ref"])
                for i in raised
            ]
        attempts = []
        for body in payloads:
            for name in context["sinks"]:
                kind, config, enabled = sinks.get(name, (None, {}, False))
                if kind is None or not enabled:
                    attempts.append((body["id"], name, kind or "unknown", "failed",
                                     f"alert sink {name} no longer exists or is disabled"))
                    continue
                try:
                    _sinks().deliver(kind, config, body)
                except NexmlError as exc:
                    attempts.append((body["id"], name, kind, "failed", str(exc).splitlines()[0]))
                else:
                    attempts.append((body["id"], name, kind, "sent", None))
        now = self._now()
        with self._write() as s:
            for alert_id, name, kind, status, error in attempts:
                s.add(t.AlertDelivery(alert_id=alert_id, sink=name, kind=kind, status=status,
                                      error=error, at=now))
                self._event(s, "alert.deliver", f"alert:{alert_id}", sink=name, kind=kind,
                            status=status, error=error)

    def _ask_retrain(self, deployment: str, context: dict[str, Any], raised: list[int]) -> None:
        """With ``retrain_on_alert``, submit one ``retrain`` job for this window's new drift or
        performance alerts as the person who enrolled the monitor, unless one is already queued
        or running for the deployment; what happened (the job, or why not) is an event."""
        if not context["retrain_on_alert"] or context["source"] is None:
            return
        with self._read() as s:
            wanted = [
                i for i in raised if alerting.RE_REVIEW_TRIGGER.get(_alert_row(s, i).kind)
            ]
            pending = [
                j.id for j in s.scalars(
                    select(t.Job).where(t.Job.kind == RETRAIN_KIND,
                                        t.Job.status.in_(("queued", "running")))
                )
                if (j.params or {}).get("deployment") == deployment
            ]
        if not wanted:
            return
        outcome: dict[str, Any] = {"alerts": wanted, "on_behalf_of": context["created_by"]}
        if pending:
            outcome["pending_job"] = pending[0]
        else:
            try:
                person = self._person(context["created_by"])  # type: ignore[attr-defined]
                job = person.submit_job(
                    RETRAIN_KIND, {"deployment": deployment, "source": context["source"]}
                )
                outcome["job"] = job.id
            except NexmlError as exc:
                outcome["error"] = f"retraining not submitted: {str(exc).splitlines()[0]}"
        with self._write() as s:
            for alert_id in wanted:
                row = _alert_row(s, alert_id, lock=True)
                row.data = {**(row.data or {}), "retrain": outcome}
            self._event(s, "monitor.retrain", f"monitor:{deployment}", **outcome)


# --- helpers ----------------------------------------------------------------------------------


def _sinks():  # type: ignore[no-untyped-def]
    try:
        from ..monitoring import sinks
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise NexmlError(f"alert sinks are not available: {exc}") from None
    return sinks


def _frame(data: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(data)


def _jsonable(value: Any) -> Any:
    from ..ml.json_values import jsonable

    return jsonable(value)


def _segments(segments: Iterable[str]) -> tuple[str, ...]:
    if isinstance(segments, str):
        segments = [p.strip() for p in segments.split(",") if p.strip()]
    out = []
    for name in segments:
        if not isinstance(name, str) or not name.strip() or len(name) > _SEGMENT_LENGTH:
            raise InvalidInput(f"segment column names must be non-empty text of at most "
                               f"{_SEGMENT_LENGTH} characters, got {name!r}")
        out.append(name.strip())
    return tuple(dict.fromkeys(out))


def _shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """A sink's config for the audit trail: a webhook URL's path and query (often a token)
    left out, secrets being only environment variable names already."""
    from urllib.parse import urlsplit

    shown = dict(config)
    if isinstance(shown.get("url"), str):
        parts = urlsplit(shown["url"])
        shown["url"] = f"{parts.scheme}://{parts.netloc}/..."
    return shown


def _template_thresholds(template: str | None) -> dict[str, float]:
    return dict(policy.template(template).thresholds) if template else {}


def _deployment_row(s, name: str) -> t.Deployment:
    row = s.scalars(select(t.Deployment).where(t.Deployment.name == name)).first()
    if row is None:
        raise NotFound(f"deployment {name!r} not found")
    return row


def _deployment_name(s, deployment_id: int | None) -> str | None:
    if deployment_id is None:
        return None
    row = s.get(t.Deployment, deployment_id)
    return row.name if row is not None else None


def _monitor_row(s, dep: t.Deployment, *, lock: bool = False) -> t.Monitor:
    query = select(t.Monitor).where(t.Monitor.deployment_id == dep.id)
    if lock:
        query = query.with_for_update()
    row = s.scalars(query).first()
    if row is None:
        raise NotFound(
            f"{dep.name} is not enrolled for monitoring (a manager enrols it: nexml monitor enrol)"
        )
    return row


def _alert_row(s, alert_id: int, *, lock: bool = False) -> t.Alert:
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise InvalidInput(f"an alert id is a whole number, got {alert_id!r}")
    row = s.get(t.Alert, alert_id, with_for_update=lock or None)
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    return row


def _run_view(s, row: t.MonitorRun, deployment: str) -> MonitorRun:
    mv = s.get(t.ModelVersion, row.model_version_id)
    return MonitorRun(
        row.id, deployment, format_ref(mv.model.name, mv.version), row.window_kind,
        row.window_start, row.window_end, row.rows, row.outcomes, row.breaches,
        tuple(row.alerts or ()), row.run_by, row.created_at, dict(row.details or {}),
    )


def _sink_view(row: t.AlertSink) -> AlertSink:
    return AlertSink(row.name, row.kind, dict(row.config or {}), row.enabled, row.created_by,
                     row.created_at)
