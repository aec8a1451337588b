"""Platform-made reports: run a template, render it, store both, record the report.

``make_report`` is the one way a report comes to exist. The person asking needs
``report.generate`` (and, for an audit report, the audit reads themselves); the platform runs
the template in a fresh kernel that opens the store with a one-time grant
(:mod:`nexml_ext.reports.context`): the platform's principal, reading only, limited to what the
kind needs, valid only while this run is the report's running run. The executed notebook and
the HTML go to the write-once artifact store; the report row keeps their SHA-256s, what was
described (subject, period) and the chain heads the report shows, and the audit chain gets
``report.start`` and ``report.make`` (or ``report.fail``). ``verify_report`` tells whether an
HTML file is one the platform made: an edited copy's hash matches nothing.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import (
    AuthenticationFailed,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ReportFailed,
)
from ..governance import roles, tokens
from ..governance.naming import format_ref
from ..governance.roles import Grant, Principal, Role
from ..store import tables as t
from ..store.artifacts import ArtifactStore
from ..store.database import Database
from . import views
from .audit import _when
from .core import PLATFORM_USER, WorkspaceCore

_GRANT = re.compile(r"^nxg_([0-9]{1,12})_([A-Za-z0-9_-]{43})$")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
#: A run's grant outlives its time limit by this much (kernel start-up, rendering).
_GRANT_SLACK = timedelta(seconds=120)
DEFAULT_TIMEOUT = 600


@dataclass(frozen=True)
class ReportScope:
    """What a report run's kernel may do: read, through these actions only."""

    report_id: int
    kind: str
    reads: frozenset[str]


class ReportsMixin(WorkspaceCore):
    #: Set only on the Workspace a report run's kernel opens (``open_report_run``).
    _report_scope: ReportScope | None = None

    # --- making reports ----------------------------------------------------------------------

    def make_report(
        self,
        kind: str,
        *,
        subject: str | None = None,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
        month: str | None = None,
        deployment: str | None = None,
        dataset: str | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        requested_by: str | None = None,
        job_id: int | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> views.Report:
        """Have the platform make a report and record it; returns the finished report.

        ``compliance`` takes ``subject`` (a model version, NAME:VERSION); ``audit`` takes
        ``since`` and ``until`` (UTC dates, ``until`` inclusive, or ISO date-times) or ``month``
        (YYYY-MM); ``drift`` takes a ``deployment`` and a period; ``validation`` takes a
        ``subject`` and the labelled ``dataset`` version (NAME:VERSION) it scores, and when the
        report is done the platform records the validation its run computed, linked to the
        report (``Validation.report_id``), which is what an approval then rests on.
        ``timeout`` limits each cell
        of the run, in seconds. ``requested_by`` is for the job runner, which runs as the
        platform on a person's behalf; so is ``checkpoint`` (the job's cancel check), called
        about every second while the template runs: when it raises, the kernel is killed, the
        report is recorded as failed with that reason, and the exception propagates.
        Raises PermissionDenied, InvalidInput, NotFound, ReportFailed (the template raised or
        ran out of time: the report is recorded as failed, with the error).
        """
        from ..reports.kinds import kind as kind_of

        spec = kind_of(kind)
        self._authorize("report.generate", f"a {spec.name} report")
        # The platform's job runner acts for a person whose reads were checked at submission.
        asking = () if self.principal.role is Role.PLATFORM else spec.requires
        for action in asking:
            if roles.grant(self.principal.role, action) is not Grant.ALLOW:
                raise PermissionDenied(
                    f"permission denied: {self.principal} may not have the platform make a "
                    f"{spec.name} report: it reads what a {self.principal.role.value} may not "
                    f"({action})"
                )
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= 86400:
            raise InvalidInput(
                f"a report's time limit is whole seconds from 1 to 86400, got {timeout!r}"
            )
        params, period = self._report_params(
            spec, subject, since, until, month, deployment, dataset
        )
        if requested_by and self.principal.role is not Role.PLATFORM:
            raise PermissionDenied(
                f"permission denied: {self.principal} may not make a report on behalf of "
                f"{requested_by}: only the platform's job runner acts for another person"
            )
        requester = requested_by or self.principal.name
        title = self._report_title(spec, params, month)
        secret = secrets.token_urlsafe(32)
        with self._write() as s:
            row = t.Report(
                kind=spec.name,
                title=title,
                subject_ref=_subject_of(params),
                status="running",
                period_start=period[0],
                period_end=period[1],
                params=params,
                summary={},
                chain_heads={},
                created_by=requester,
                grant_sha256=tokens.hash_secret(secret),
                grant_expires_at=t.utcnow() + timedelta(seconds=timeout) + _GRANT_SLACK,
                job_id=job_id,
            )
            s.add(row)
            s.flush()
            report_id = row.id
            self._event(
                s,
                "report.start",
                f"report:{report_id}",
                kind=spec.name,
                subject=_subject_of(params),
                period=_period_text(period),
                requested_by=requester,
            )
        try:
            html, notebook, summary, template_sha = self._run_report(
                report_id, spec, params, period, title, requester, f"nxg_{report_id}_{secret}",
                timeout, checkpoint,
            )
            validation = _validation_of(summary, params) if params.get("dataset_ref") else None
            return self._report_done(
                report_id, html, notebook, summary, template_sha, requester, validation
            )
        except BaseException as exc:
            self._report_failed(report_id, exc)
            raise

    def _run_report(
        self,
        report_id: int,
        spec: Any,
        params: dict[str, Any],
        period: tuple[datetime | None, datetime | None],
        title: str,
        requester: str,
        grant: str,
        timeout: int,
        checkpoint: Callable[[], None] | None = None,
    ) -> tuple[bytes, bytes, dict[str, Any], str]:
        import nbformat

        from .. import __version__
        from ..reports import execute, html
        from ..reports.context import GRANT_VARIABLE
        from ..reports.paths import notebook_path

        template = notebook_path(spec.notebook)
        template_sha = hashlib.sha256(template.read_bytes()).hexdigest()
        env = execute.kernel_env(
            {
                "NEXML_HOME": str(self.settings.home),
                "NEXML_DATABASE_URL": self.settings.database_url,
                "NEXML_ARTIFACT_ROOT": self.settings.artifact_root,
                GRANT_VARIABLE: grant,
            }
        )
        executed = execute.run_notebook(
            template, params, env, timeout=timeout, checkpoint=checkpoint
        )
        summary = execute.summary_of(executed)
        heads = summary.get("chain_heads")
        if not isinstance(heads, dict) or not heads:
            raise ReportFailed(
                f"report template {spec.notebook} showed no chain heads: a report must carry them"
            )
        made_at = t.utcnow()
        facts = [("Report", f"#{report_id}: {spec.title}")]
        if params.get("model_ref"):
            facts.append(("Model version", params["model_ref"]))
        if params.get("deployment"):
            facts.append(("Deployment", params["deployment"]))
        if params.get("dataset_ref"):
            facts.append(("Dataset version", params["dataset_ref"]))
        if summary.get("artifact_sha256"):
            facts.append(("Artifact SHA-256", summary["artifact_sha256"]))
        facts.append(
            (
                "Period",
                f"{_period_text(period)} (UTC, both days included)"
                if period[0]
                else "none: the record as it stood when the report was made",
            )
        )
        facts += [
            ("Made at", f"{made_at:%Y-%m-%d %H:%M:%S} UTC"),
            ("Made by", f"the nexml-ext {__version__} platform, asked by {requester}"),
            ("Template", f"notebooks/{spec.notebook}, SHA-256 {template_sha}"),
            (
                "Chain heads",
                "; ".join(
                    f"{chain} #{head['seq']} {str(head['hash'])[:16]}…"
                    for chain, head in sorted(heads.items())
                ),
            ),
        ]
        annotated = html.annotate(executed, title=title, facts=facts, alerts=_alerts(summary))
        annotated.metadata["nexml"]["report_id"] = report_id
        notebook = nbformat.writes(annotated).encode("utf-8")
        return html.render(annotated), notebook, summary, template_sha

    def _report_done(
        self,
        report_id: int,
        html: bytes,
        notebook: bytes,
        summary: dict[str, Any],
        template_sha: str,
        requester: str,
        validation: dict[str, Any] | None = None,
    ) -> views.Report:
        nb_uri, nb_sha = self._store.put_bytes(notebook, f"reports/{report_id}/report.ipynb")
        html_uri, html_sha = self._store.put_bytes(html, f"reports/{report_id}/report.html")
        with self._write() as s:
            row = self._report_row(s, report_id, lock=True)
            row.status = "done"
            row.notebook_uri, row.notebook_sha256 = nb_uri, nb_sha
            row.html_uri, row.html_sha256 = html_uri, html_sha
            row.chain_heads = summary["chain_heads"]
            row.summary = summary
            row.grant_sha256 = None
            row.finished_at = t.utcnow()
            s.flush()
            if validation is not None:
                # The numbers the report shows become the platform's validation record, in the
                # same transaction as the report itself: one cannot exist without the other.
                made = self._as_platform()._add_validation(  # type: ignore[attr-defined]
                    s, row.subject_ref, report_id=report_id, requested_by=requester,
                    **validation,
                )
                row.summary = {**summary, "validation_id": made.id}
            self._event(
                s,
                "report.make",
                f"report:{report_id}",
                kind=row.kind,
                subject=row.subject_ref,
                period=_period_text((row.period_start, row.period_end)),
                notebook_sha256=nb_sha,
                html_sha256=html_sha,
                template_sha256=template_sha,
                chain_heads=summary["chain_heads"],
                requested_by=requester,
            )
            return views.Report.of(row)

    def _report_failed(self, report_id: int, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, ReportFailed) else f"{type(exc).__name__}: {exc}"
        with self._write() as s:
            row = self._report_row(s, report_id, lock=True)
            row.status = "failed"
            row.error = message[:2000]
            row.grant_sha256 = None
            row.finished_at = t.utcnow()
            s.flush()
            self._event(s, "report.fail", f"report:{report_id}", kind=row.kind, error=row.error)

    def _report_params(
        self,
        spec: Any,
        subject: str | None,
        since: date | datetime | str | None,
        until: date | datetime | str | None,
        month: str | None,
        deployment: str | None = None,
        dataset: str | None = None,
    ) -> tuple[dict[str, Any], tuple[datetime | None, datetime | None]]:
        params: dict[str, Any] = {}
        if spec.deployment:
            if not deployment:
                raise InvalidInput(f"a {spec.name} report needs a deployment name")
            with self._read() as s:
                found = s.execute(
                    select(t.Deployment.name).where(t.Deployment.name == deployment)
                ).scalar_one_or_none()
            if found is None:
                raise NotFound(f"deployment {deployment!r} not found")
            params["deployment"] = found
        elif deployment:
            raise InvalidInput(f"a {spec.name} report takes no deployment, got {deployment!r}")
        if spec.subject:
            if not subject:
                raise InvalidInput(f"a {spec.name} report needs a model version (NAME:VERSION)")
            with self._read() as s:
                params["model_ref"] = format_ref(*_name_version(self._version_row(s, subject)))
        elif subject:
            raise InvalidInput(f"a {spec.name} report takes no subject, got {subject!r}")
        if getattr(spec, "dataset", False):
            if not dataset:
                raise InvalidInput(
                    f"a {spec.name} report needs a labelled dataset version (NAME:VERSION)"
                )
            with self._read() as s:
                row = self._dataset_version_row(s, dataset)  # type: ignore[attr-defined]
                params["dataset_ref"] = format_ref(row.dataset.name, row.version)
        elif dataset:
            raise InvalidInput(f"a {spec.name} report takes no dataset, got {dataset!r}")
        if not spec.period:
            if since or until or month:
                raise InvalidInput(f"a {spec.name} report takes no period; it shows the record now")
            return params, (None, None)
        if month:
            if since or until:
                raise InvalidInput("give either --month or --since/--until, not both")
            since, until = _month_range(month)
        if not since or not until:
            raise InvalidInput(
                f"a {spec.name} report needs a period: since and until (YYYY-MM-DD) or a month"
            )
        start, end = _when(since, end=False), _when(until, end=True)
        if start > end:
            raise InvalidInput(f"the period starts after it ends: {since} is after {until}")
        params["since"], params["until"] = _param_text(since), _param_text(until)
        return params, (start, end)

    def _report_title(self, spec: Any, params: dict[str, Any], month: str | None) -> str:
        if params.get("model_ref") and params.get("dataset_ref"):
            return f"{spec.title}: {params['model_ref']} on {params['dataset_ref']}"
        if params.get("model_ref"):
            return f"{spec.title}: {params['model_ref']}"
        what = f"{params['deployment']}, " if params.get("deployment") else ""
        if month:
            return f"{spec.title}: {what}{month}"
        return f"{spec.title}: {what}{params['since']} to {params['until']}"

    # --- reading reports ---------------------------------------------------------------------

    def reports(self, *, kind: str | None = None, limit: int = 50) -> list[views.Report]:
        """Recorded reports, newest first. Data scientists see those about their own versions."""
        if limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit}")
        own_only = roles.grant(self.principal.role, "report.view") is Grant.OWN
        if not own_only:
            self._authorize("report.view", "reports")
        query = select(t.Report).order_by(t.Report.id.desc())
        if kind:
            query = query.where(t.Report.kind == kind)
        if own_only:
            mine = [
                format_ref(name, version)
                for name, version in self._own_versions()
            ]
            query = query.where(t.Report.subject_ref.in_(mine))
        with self._read() as s:
            return [views.Report.of(row) for row in s.scalars(query.limit(limit))]

    def report(self, report_id: int) -> views.Report:
        """One report by number."""
        with self._read() as s:
            row = self._visible_report(s, report_id)
            return views.Report.of(row)

    def report_html(self, report_id: int) -> bytes:
        """The report's HTML, checked against its recorded SHA-256 as it is read."""
        return self._report_bytes(report_id, "html")

    def report_notebook(self, report_id: int) -> bytes:
        """The executed notebook (``.ipynb`` bytes), checked against its recorded SHA-256."""
        return self._report_bytes(report_id, "notebook")

    def verify_report(self, html: bytes | str | Path) -> views.Report:
        """The report whose HTML these bytes are (a path is read); IntegrityError if none is.

        Only the platform's exact bytes match: a report edited by hand, even by one character,
        has another SHA-256 and is not evidence. The stored copy is re-checked too.
        """
        data = _bytes_of(html)
        self._authorize("report.view", "a report file")
        digest = hashlib.sha256(data).hexdigest()
        with self._read() as s:
            row = s.execute(
                select(t.Report).where(t.Report.html_sha256 == digest, t.Report.status == "done")
            ).scalars().first()
            if row is None:
                raise IntegrityError(
                    f"not a platform report: its SHA-256 {digest[:16]}… matches no report the "
                    "platform made (a report edited by hand is not evidence)"
                )
            uri, report = row.html_uri, views.Report.of(row)
        self._store.get_bytes(uri, digest)  # the stored original is still intact
        return report

    def report_is_authentic(self, html: bytes | str | Path) -> bool:
        """Whether these HTML bytes are exactly a report the platform made and recorded."""
        try:
            self.verify_report(html)
        except IntegrityError:
            return False
        return True

    def decision_summary(
        self,
        *,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Recorded decisions counted per deployment and model version (artifact) in a period:
        answered, approved, declined, shadow, with approve and decline rates over the answered.
        Aggregates only: no individual record is returned (so no read is audited)."""
        self._authorize("prediction.read", "prediction records")
        P = t.PredictionRecord
        query = (
            select(t.Deployment.name, t.Model.name, t.ModelVersion.version,
                   P.artifact_sha256, P.output, P.shadow)
            .join(t.Deployment, t.Deployment.id == P.deployment_id)
            .join(t.ModelVersion, t.ModelVersion.id == P.model_version_id)
            .join(t.Model, t.Model.id == t.ModelVersion.model_id)
            .order_by(t.Deployment.name, t.Model.name, t.ModelVersion.version)
        )
        if since is not None:
            query = query.where(P.at >= _when(since, end=False))
        if until is not None:
            query = query.where(P.at <= _when(until, end=True))
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        with self._read() as s:
            for dep, model, version, sha, output, shadow in s.execute(
                query.execution_options(yield_per=2000)
            ):
                ref = format_ref(model, version)
                g = groups.setdefault(
                    (dep, ref, sha),
                    {"deployment": dep, "model_ref": ref, "artifact_sha256": sha,
                     "decisions": 0, "approved": 0, "declined": 0, "shadow": 0},
                )
                if shadow:
                    g["shadow"] += 1
                    continue
                g["decisions"] += 1
                approved = (output or {}).get("approved")
                if approved is True:
                    g["approved"] += 1
                elif approved is False:
                    g["declined"] += 1
        for g in groups.values():
            n = g["decisions"]
            g["approve_rate"] = g["approved"] / n if n else None
            g["decline_rate"] = g["declined"] / n if n else None
        return list(groups.values())

    # --- the report run's own Workspace ------------------------------------------------------

    @classmethod
    def open_report_run(cls, settings: Any, grant: str) -> Any:
        """The Workspace a report run's kernel works with: the platform, reading only.

        ``grant`` is ``nxg_<report id>_<secret>``, made by ``make_report`` for one run; it is
        refused unless it is that report's current grant (SHA-256 compared in constant time)
        and the run has neither finished nor outlived its time limit.
        """
        from ..reports.kinds import kind as kind_of

        match = _GRANT.match(grant.strip()) if isinstance(grant, str) else None
        if not match:
            raise AuthenticationFailed("report grant refused: it is not a report grant")
        report_id, secret = int(match.group(1)), match.group(2)
        db = Database(settings.database_url)
        try:
            db.check_schema()
            with db.read() as s:
                row = s.get(t.Report, report_id)
                stored = (row.grant_sha256 if row is not None else None) or "0" * 64
                if not tokens.secret_matches(secret, stored) or row is None:
                    raise AuthenticationFailed(
                        "report grant refused: it is not the grant of a running report"
                    )
                if row.status != "running" or row.grant_sha256 is None:
                    raise AuthenticationFailed(
                        f"report grant refused: report {report_id} is {row.status}"
                    )
                if row.grant_expires_at is None or row.grant_expires_at <= t.utcnow():
                    raise AuthenticationFailed(
                        f"report grant refused: report {report_id}'s run outlived its time limit"
                    )
                spec = kind_of(row.kind)
        except BaseException:
            db.dispose()
            raise
        ws = cls(  # type: ignore[call-arg]
            settings, db, ArtifactStore(settings.artifact_root),
            Principal(PLATFORM_USER, Role.PLATFORM),
        )
        ws._report_scope = ReportScope(report_id, spec.name, spec.reads)
        return ws

    def _authorize(self, action: str, subject: str = "", owner: str | None = None) -> None:
        scope = self._report_scope
        if scope is not None and action not in scope.reads:
            raise PermissionDenied(
                f"permission denied: the run of report {scope.report_id} may only read what a "
                f"{scope.kind} report needs, not {action.replace('.', ' ')}"
            )
        super()._authorize(action, subject, owner)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        scope = self._report_scope
        if scope is not None:
            raise PermissionDenied(
                f"permission denied: the run of report {scope.report_id} only reads; "
                "it changes nothing"
            )
        with super()._write() as session:
            yield session

    # --- helpers -----------------------------------------------------------------------------

    def _report_row(self, s: Session, report_id: int, *, lock: bool = False) -> t.Report:
        query = select(t.Report).where(t.Report.id == report_id)
        if lock:
            query = query.with_for_update()
        row = s.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"report {report_id} not found")
        return row

    def _visible_report(self, s: Session, report_id: int) -> t.Report:
        """The report row, if the principal may read it (data scientists: reports about their
        own versions)."""
        row = s.get(t.Report, report_id)
        owner = None
        if row is not None and row.subject_ref and row.kind in ("compliance", "validation"):
            try:
                owner = self._version_row(s, row.subject_ref).author
            except NotFound:
                owner = None
        self._authorize("report.view", f"report {report_id}", owner=owner)
        if row is None:
            raise NotFound(f"report {report_id} not found")
        return row

    def _report_bytes(self, report_id: int, which: str) -> bytes:
        with self._read() as s:
            row = self._visible_report(s, report_id)
            uri = row.html_uri if which == "html" else row.notebook_uri
            sha = row.html_sha256 if which == "html" else row.notebook_sha256
            status = row.status
        if status != "done" or not uri or not sha:
            raise NotFound(f"report {report_id} has no {which}: it is {status}")
        return self._store.get_bytes(uri, sha)

    def _own_versions(self) -> list[tuple[str, int]]:
        with self._read() as s:
            return list(
                s.execute(
                    select(t.Model.name, t.ModelVersion.version)
                    .join(t.Model, t.Model.id == t.ModelVersion.model_id)
                    .where(t.ModelVersion.author == self.principal.name)
                ).tuples()
            )


def _subject_of(params: dict[str, Any]) -> str | None:
    """What a report is about: a model version, a deployment (``deployment:NAME``), or None."""
    if params.get("model_ref"):
        return params["model_ref"]
    if params.get("deployment"):
        return f"deployment:{params['deployment']}"
    return None


def _validation_of(summary: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The validation a validation report's run computed, from its summary, checked to be about
    what was asked (ReportFailed otherwise: then neither the report nor a validation is kept)."""
    found = summary.get("validation")
    if not isinstance(found, dict):
        raise ReportFailed("the validation report's run showed no validation result")
    for key, wanted in (("model_ref", params.get("model_ref")),
                        ("dataset", params.get("dataset_ref"))):
        if found.get(key) != wanted:
            raise ReportFailed(
                f"the validation report's run describes {key} {found.get(key)!r}, not {wanted!r}"
            )
    status = found.get("status")
    if status not in ("passed", "failed") or not isinstance(found.get("metrics"), dict):
        raise ReportFailed("the validation report's run showed no status and metrics")
    return {
        "artifact_sha256": str(found.get("artifact_sha256")),
        "metrics": found["metrics"],
        "dataset": params["dataset_ref"],
        "status": status,
        "details": dict(found.get("details") or {}),
    }


def _name_version(row: t.ModelVersion) -> tuple[str, int]:
    return row.model.name, row.version


def _alerts(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Red banners for the top of the report: every chain that failed verification, and what
    the template itself flagged (``alerts`` in its summary, e.g. drift over the alert line)."""
    verification = summary.get("verification") or {}
    alerts = [
        {"title": str(a.get("title", "")), "text": str(a.get("text", ""))}
        for a in summary.get("alerts") or []
        if isinstance(a, dict)
    ]
    for chain in verification.get("chains", []):
        if not chain.get("ok"):
            alerts.append(
                {
                    "title": "Audit-chain verification FAILED",
                    "text": f"chain {chain.get('chain')} is broken at record "
                    f"{chain.get('first_bad_seq')}: {chain.get('problem')}",
                }
            )
    return alerts


def _month_range(month: str) -> tuple[str, str]:
    match = _MONTH.match(month.strip()) if isinstance(month, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InvalidInput(f"invalid month {month!r}: use YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    last = calendar.monthrange(year, number)[1]
    return f"{year:04d}-{number:02d}-01", f"{year:04d}-{number:02d}-{last:02d}"


def _param_text(value: date | datetime | str) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _period_text(period: tuple[datetime | None, datetime | None]) -> str | None:
    start, end = period
    if start is None or end is None:
        return None
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"


def _bytes_of(html: bytes | str | Path) -> bytes:
    if isinstance(html, bytes | bytearray | memoryview):
        return bytes(html)
    path = Path(html)
    if not path.is_file():
        raise NotFound(f"no report file at {path}")
    return path.read_bytes()
