"""Use cases behind the review dashboards: the manager's queue, and an examiner's search and
export of recorded decisions.

``review_queue`` lists the versions waiting for a decision or a deployment across every model.
``search_decisions`` is ``find_decisions`` with a route filter (what the audit-trail dashboard
filters on); ``export_decisions`` makes the CSV of chosen decisions from the stored records
themselves, so what leaves the platform is exactly what was recorded. Both are reads of
personal data by a person, so each call appends an event (``prediction.read``,
``prediction.export``) naming the query and every request id it returned.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from datetime import date as Date
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..errors import InvalidInput, NotFound
from ..governance.lifecycle import Status
from ..governance.naming import format_ref
from ..governance.roles import Role
from ..store import tables as t
from . import views
from .core import WorkspaceCore

#: At most this many decisions in one export (a month of a busy route is a report, not a CSV).
EXPORT_LIMIT = 10_000
#: The CSV's columns, in order.
EXPORT_COLUMNS = (
    "request_id", "subject_id", "at", "route", "rule", "deployment", "model_ref",
    "artifact_sha256", "prediction", "score", "confidence", "approved", "reasons", "inputs",
    "output", "caller", "latency_ms", "shadow", "chain", "seq", "hash", "link_verified",
)


class ReviewMixin(WorkspaceCore):
    def review_queue(
        self, *, statuses: Sequence[str] = ("staging", "approved")
    ) -> list[views.ModelVersion]:
        """Versions in ``statuses`` (default: staging, approved) across every model, by model
        name and version. Raises PermissionDenied, InvalidInput (an unknown status)."""
        self._authorize("model.view", "model versions")
        known = {s.value for s in Status}
        wanted = [str(s) for s in statuses]
        unknown = [s for s in wanted if s not in known]
        if unknown or not wanted:
            raise InvalidInput(
                f"unknown status {', '.join(unknown) or '(none given)'}: choose from "
                f"{', '.join(sorted(known))}"
            )
        query = (
            select(t.ModelVersion)
            .join(t.Model, t.Model.id == t.ModelVersion.model_id)
            .where(t.ModelVersion.status.in_(wanted))
            .order_by(t.Model.name, t.ModelVersion.version)
        )
        with self._read() as s:
            return [views.ModelVersion.of(row) for row in s.scalars(query)]

    def search_decisions(
        self,
        *,
        since: datetime | Date | str | None = None,
        until: datetime | Date | str | None = None,
        route: str | None = None,
        subject_id: str | None = None,
        deployment: str | None = None,
        request_id: str | None = None,
        limit: int = 100,
    ) -> list[views.Decision]:
        """Recorded decisions, oldest first, with each record's chain proof: ``find_decisions``
        with ``route`` (the route a decision was asked through) as one more filter.

        ``since``/``until`` are UTC dates (a bare ``until`` includes that day) or ISO
        date-times. A person's call appends a ``prediction.read`` event naming the query and
        the request ids returned. Raises PermissionDenied, InvalidInput.
        """
        def blank(value: Any) -> Any:
            return None if value in (None, "") else value

        return self.find_decisions(  # type: ignore[attr-defined]
            since=blank(since),
            until=blank(until),
            route=blank(route),
            subject_id=blank(subject_id),
            deployment=blank(deployment),
            request_id=blank(request_id),
            limit=limit,
        )

    def export_decisions(self, request_ids: Sequence[str]) -> bytes:
        """The CSV (UTF-8, a header row, one row per decision in the order asked) of the
        decisions with these request ids, made from the stored records, each with its chain
        proof; text that a spreadsheet would run as a formula starts with an apostrophe (the
        only change to what was recorded). A person's export appends a ``prediction.export``
        event naming every request id and the CSV's SHA-256. Raises PermissionDenied,
        InvalidInput (no ids, too many, not text), NotFound (naming the ids that match no
        recorded decision).
        """
        from .predictions import _link_ok, _predecessors

        self._authorize("prediction.read", "prediction records")
        if isinstance(request_ids, str | bytes):
            raise InvalidInput("export needs a list of request ids, not one string")
        ids = list(dict.fromkeys(request_ids or []))
        if not ids:
            raise InvalidInput("nothing to export: no decisions were selected")
        if len(ids) > EXPORT_LIMIT:
            raise InvalidInput(
                f"cannot export {len(ids)} decisions at once: at most {EXPORT_LIMIT}; "
                "narrow the search or make an audit report"
            )
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise InvalidInput(f"request ids must be non-empty text, got {bad[0]!r}")
        P = t.PredictionRecord
        rows: dict[str, tuple[Any, ...]] = {}
        with self._read() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for found in s.execute(
                    select(P, t.Deployment.name, t.Model.name, t.ModelVersion.version)
                    .join(t.Deployment, t.Deployment.id == P.deployment_id)
                    .join(t.ModelVersion, t.ModelVersion.id == P.model_version_id)
                    .join(t.Model, t.Model.id == t.ModelVersion.model_id)
                    .where(P.request_id.in_(chunk))
                ):
                    rows[found[0].request_id] = tuple(found)
            missing = [i for i in ids if i not in rows]
            if missing:
                shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                raise NotFound(
                    f"cannot export: {len(missing)} request id(s) match no recorded decision: "
                    f"{shown}"
                )
            ordered = [rows[i] for i in ids]
            before = _predecessors(s, [r[0] for r in ordered])
            lines = [
                _csv_row(row, dep, format_ref(model, version),
                         _link_ok(row, before.get((row.deployment_id, row.seq - 1))))
                for row, dep, model, version in ordered
            ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in line.items()} for line in lines)
        data = buffer.getvalue().encode("utf-8")
        deployments = sorted({r[1] for r in ordered})
        self._record_read(
            "prediction.export",
            deployments[0] if len(deployments) == 1 else None,
            format="csv",
            rows=len(lines),
            csv_sha256=hashlib.sha256(data).hexdigest(),
            returned=ids,
        )
        return data

    def _record_read(self, action: str, deployment: str | None, **data: Any) -> None:
        """Append the event for a person's read of decisions (the platform's reads, made for
        reports and serving, are recorded by what they produce)."""
        if self.principal.role is Role.PLATFORM:
            return
        with self._write() as s:
            self._event(
                s, action, f"predictions:{deployment}" if deployment else "predictions", **data
            )


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """``value`` as the CSV holds it: text a spreadsheet would run as a formula (a subject id
    ``=HYPERLINK(...)``) gets a leading apostrophe, as OWASP advises; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_row(row: t.PredictionRecord, deployment: str, ref: str, verified: bool) -> dict:
    output = row.output or {}
    reasons = "; ".join(
        f"{r.get('reason')} ({r.get('feature')}, {float(r.get('contribution', 0.0)):+.4f})"
        for r in row.reasons or []
    )
    return {
        "request_id": row.request_id,
        "subject_id": row.subject_id,
        "at": row.at.isoformat(),
        "route": row.route,
        "rule": row.rule,
        "deployment": deployment,
        "model_ref": ref,
        "artifact_sha256": row.artifact_sha256,
        "prediction": _scalar(output.get("prediction")),
        "score": output.get("score"),
        "confidence": row.confidence,
        "approved": output.get("approved"),
        "reasons": reasons,
        "inputs": json.dumps(row.inputs, sort_keys=True, default=str),
        "output": json.dumps(output, sort_keys=True, default=str),
        "caller": row.caller,
        "latency_ms": row.latency_ms,
        "shadow": bool(row.shadow),
        "chain": f"predictions:{deployment}",
        "seq": row.seq,
        "hash": row.hash,
        "link_verified": verified,
    }


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value
