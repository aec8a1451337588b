"""Use cases for decisions served by a deployment: score, find what was decided, attach outcomes.

Every scored row becomes a prediction record in its deployment's hash chain before the call
returns (group commit through :class:`~nexml_ext.store.decision_log.DecisionLog`). Finding
records is itself audited: each person's look-up appends a ``prediction.read`` event.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
import weakref
from datetime import date as Date
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import InvalidInput, InvalidTransition, NotFound
from ..governance.audit import GENESIS, canonical_json, record_hash
from ..governance.naming import format_ref
from ..governance.roles import Role
from ..store import tables as t
from ..store.database import Database
from ..store.decision_log import DecisionLog
from . import views
from .audit import _when
from .core import WorkspaceCore, chain_record

if TYPE_CHECKING:
    import pandas as pd

_LOGS: weakref.WeakKeyDictionary[Database, DecisionLog] = weakref.WeakKeyDictionary()
_LOGS_LOCK = threading.Lock()
# (artifact hash, cutoff) -> (explanation background, reason-code baseline): computing the
# baseline scores the whole training set, far too slow to repeat per request.
_REFERENCE: dict[tuple[str, float], tuple[pd.DataFrame, pd.DataFrame]] = {}
_REFERENCE_LOCK = threading.Lock()
_BACKGROUND_ROWS = 100


def decision_log(db: Database) -> DecisionLog:
    """The one DecisionLog of ``db`` (created on first use)."""
    with _LOGS_LOCK:
        log = _LOGS.get(db)
        if log is None:
            log = _LOGS[db] = DecisionLog(db)
        return log


class PredictionsMixin(WorkspaceCore):
    def score_deployment(
        self,
        deployment: str,
        inputs: list[dict[str, Any]] | pd.DataFrame,
        *,
        subject_ids: list[str | None] | None = None,
        explain: bool = True,
        route: str | None = None,
        rule: str | None = None,
        caller: str | None = None,
        request_ids: list[str] | None = None,
        shadow: bool = False,
    ) -> list[views.Decision]:
        """Score ``inputs`` with the version deployment ``deployment`` serves, and record them.

        Each row is validated against the artifact's schema, scored by the hash-verified model
        and, for binary models, given reason codes when declined (never naming a protected
        attribute) and, with ``explain``, its local contributions in input space. Returns only
        after every record is committed to the chain ``predictions:<deployment>``.
        ``request_ids`` default to fresh uuid4 hex; ``caller`` to the principal's name.
        Raises PermissionDenied, NotFound, InvalidTransition (deployment not active),
        InvalidInput (naming every bad field; nothing is recorded), Conflict (request id reused).
        """
        import pandas as pd

        started = time.perf_counter()
        self._authorize("model.score", f"deployment {deployment}")
        frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(list(inputs))
        n = len(frame)
        if n == 0:
            raise InvalidInput(f"nothing to score on {deployment!r}: no rows")
        subject_ids = _one_per_row("subject_ids", subject_ids, n) or [None] * n
        request_ids = _one_per_row("request_ids", request_ids, n) or [
            uuid.uuid4().hex for _ in range(n)
        ]
        served = self._served_version(deployment)
        model = self._load_model(served["ref"])  # type: ignore[attr-defined]
        rows = model.validate(frame)  # InvalidInput naming every bad field: nothing recorded
        scores = [float(v) for v in model.score(rows)]
        binary = model.problem_type == "binary"
        outputs, reasons, explanations = self._outputs(model, rows, scores, served, explain)
        latency = (time.perf_counter() - started) * 1000.0
        records = [
            {
                "deployment_id": served["deployment_id"],
                "request_id": str(request_ids[i]),
                "subject_id": None if subject_ids[i] is None else str(subject_ids[i]),
                "route": route,
                "rule": rule,
                "shadow": shadow,
                "model_version_id": served["version_id"],
                "artifact_sha256": served["artifact_sha256"],
                "inputs": _plain_row(rows.iloc[i]),
                "output": outputs[i],
                "confidence": max(scores[i], 1 - scores[i]) if binary else None,
                "explanation": explanations[i],
                "reasons": reasons[i],
                "caller": caller or self.principal.name,
                "latency_ms": latency,
            }
            for i in range(n)
        ]
        receipts = decision_log(self._db).submit(records)
        return [
            _decision(
                record,
                receipt.seq,
                receipt.prev_hash,
                receipt.hash,
                receipt.at,
                deployment,
                served["ref"],
                None,
            )
            for record, receipt in zip(records, receipts, strict=True)
        ]

    def find_decisions(
        self,
        *,
        request_id: str | None = None,
        subject_id: str | None = None,
        date: Date | str | None = None,
        since: datetime | Date | str | None = None,
        until: datetime | Date | str | None = None,
        deployment: str | None = None,
        limit: int = 100,
    ) -> list[views.Decision]:
        """Recorded decisions, oldest first, with each record's chain proof.

        ``date`` is one UTC day; ``since``/``until`` a range (a bare ``until`` date includes
        that day). Each call by a person appends a ``prediction.read`` event naming the query
        and the request ids returned. Raises PermissionDenied, InvalidInput.
        """
        self._authorize("prediction.read", "prediction records")
        if limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit}")
        query = (
            select(t.PredictionRecord, t.Deployment.name, t.Model.name, t.ModelVersion.version)
            .join(t.Deployment, t.Deployment.id == t.PredictionRecord.deployment_id)
            .join(t.ModelVersion, t.ModelVersion.id == t.PredictionRecord.model_version_id)
            .join(t.Model, t.Model.id == t.ModelVersion.model_id)
            .order_by(t.PredictionRecord.at, t.PredictionRecord.id)
            .limit(limit)
        )
        P = t.PredictionRecord
        if request_id:
            query = query.where(P.request_id == request_id)
        if subject_id:
            query = query.where(P.subject_id == str(subject_id))
        if date is not None:
            query = query.where(P.at >= _when(date, end=False), P.at <= _when(date, end=True))
        if since is not None:
            query = query.where(P.at >= _when(since, end=False))
        if until is not None:
            query = query.where(P.at <= _when(until, end=True))
        if deployment:
            query = query.where(t.Deployment.name == deployment)
        with self._read() as s:
            found = []
            for row, dep, model, version in s.execute(query):
                found.append(
                    _decision(
                        chain_record(row),
                        row.seq,
                        row.prev_hash,
                        row.hash,
                        row.at,
                        dep,
                        format_ref(model, version),
                        _link_ok(s, row),
                        outcome=row.outcome,
                        outcome_at=row.outcome_at,
                    )
                )
        if self.principal.role is not Role.PLATFORM:
            asked = {
                "request_id": request_id,
                "subject_id": subject_id,
                "date": date,
                "since": since,
                "until": until,
                "deployment": deployment,
                "limit": limit,
            }
            with self._write() as s:
                self._event(
                    s,
                    "prediction.read",
                    f"predictions:{deployment}" if deployment else "predictions",
                    query={
                        k: v if isinstance(v, str | int) else str(v)
                        for k, v in asked.items()
                        if v is not None
                    },
                    returned=[d.request_id for d in found],
                )
        return found

    def record_outcomes(self, outcomes: list[dict[str, Any]]) -> int:
        """Attach actual outcomes to past predictions; returns how many records got one.

        Each item is ``{"request_id": ..., "outcome": ...}`` or ``{"subject_id": ...,
        "outcome": ...}`` (every prediction about that subject). Outcomes are outside the
        records' hashes (they arrive later by design); each call appends a
        ``prediction.outcome`` event holding them. All or nothing.
        Raises PermissionDenied, InvalidInput, NotFound (an id matching no prediction).
        """
        import json

        self._authorize("prediction.outcome", "prediction records")
        if not outcomes:
            raise InvalidInput("no outcomes given")
        P = t.PredictionRecord
        now = t.utcnow()
        updated, attached = 0, []
        with self._write() as s:
            for item in outcomes:
                key = _outcome_key(item)
                value = json.loads(canonical_json(item["outcome"]))
                column = P.request_id if key[0] == "request_id" else P.subject_id
                rows = list(s.scalars(select(P).where(column == str(key[1])).with_for_update()))
                if not rows:
                    raise NotFound(f"no prediction recorded with {key[0]} {key[1]!r}")
                for row in rows:
                    row.outcome, row.outcome_at = value, now
                updated += len(rows)
                attached.append(
                    {
                        key[0]: str(key[1]),
                        "outcome": value,
                        "requests": [r.request_id for r in rows],
                    }
                )
            s.flush()
            self._event(s, "prediction.outcome", "predictions", outcomes=attached, records=updated)
        return updated

    # --- helpers -----------------------------------------------------------------------------

    def _served_version(self, deployment: str) -> dict[str, Any]:
        with self._read() as s:
            row = s.execute(
                select(t.Deployment).where(t.Deployment.name == deployment)
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"deployment {deployment!r} not found")
            if row.status != "active":
                raise InvalidTransition(f"cannot score on {deployment!r}: it is {row.status}")
            mv = row.model_version
            return {
                "deployment_id": row.id,
                "version_id": mv.id,
                "ref": format_ref(mv.model.name, mv.version),
                "artifact_sha256": mv.artifact_sha256,
                "lineage": mv.lineage or {},
                "template": mv.model.template,
            }

    def _outputs(self, model, rows, scores, served, explain):  # type: ignore[no-untyped-def]
        """Per row: the output, the reasons (declined binary rows) and the explanation."""
        from ..ml.explain import explain_local, reason_codes
        from ..ml.validation import cutoff_of

        n = len(rows)
        if model.problem_type != "binary":
            plain = [_plain(v) for v in model.predict(rows)]
            return (
                [{"prediction": plain[i], "score": scores[i]} for i in range(n)],
                [[] for _ in range(n)],
                [{} for _ in range(n)],
            )
        cutoff = cutoff_of(model)
        negative, positive = (_plain(c) for c in model.classes)
        outputs = [
            {
                "prediction": positive if sc >= cutoff else negative,
                "score": sc,
                "approved": sc >= cutoff,
                "cutoff": cutoff,
            }
            for sc in scores
        ]
        declined = any(sc < cutoff for sc in scores)
        if not (explain or declined):
            return outputs, [[] for _ in range(n)], [{} for _ in range(n)]
        background, baseline = self._reason_reference(model, served, cutoff)
        local = explain_local(model, rows, background=background) if explain else None
        reasons = reason_codes(
            model,
            rows,
            baseline=baseline,
            cutoff=cutoff,
            explanation=local,
            protected=self._protected_of(  # type: ignore[attr-defined]
                {"lineage": served["lineage"], "template": served["template"]}
            ),
        )
        return (
            outputs,
            [[r.to_dict() for r in row] for row in reasons],
            [local.to_dict(i) if local is not None else {} for i in range(n)],
        )

    def _reason_reference(self, model, served, cutoff: float):  # type: ignore[no-untyped-def]
        from ..ml.explain import reason_baseline

        key = (served["artifact_sha256"], cutoff)
        with _REFERENCE_LOCK:
            cached = _REFERENCE.get(key)
        if cached is not None:
            return cached
        datasets = served["lineage"].get("datasets") or []
        if not datasets:
            raise InvalidInput(
                f"cannot explain decisions of {served['ref']}: it records no training data"
            )
        # The platform reads the training data; the caller needs no dataset access to score.
        pool = self._as_platform().load_dataset(datasets[0]["ref"])  # type: ignore[attr-defined]
        background = pool.sample(min(_BACKGROUND_ROWS, len(pool)), random_state=0)
        cached = (background, reason_baseline(model, pool, cutoff))
        with _REFERENCE_LOCK:
            _REFERENCE[key] = cached
        return cached

    def predict(
        self,
        route: str,
        inputs: list[dict[str, Any]] | pd.DataFrame,
        *,
        subject_ids: list[str | None] | None = None,
        explain: bool = True,
        key: str | None = None,
        caller: str | None = None,
    ) -> list[views.Decision]:
        """Score requests through route ``route`` and record every decision.

        Each row goes where the route's rules send it (first matching rule, else the default,
        with the canary share diverted by subject id); rows for one deployment and rule are
        scored together. A shadow deployment scores the same rows and records them marked
        ``shadow``; its answers are never returned. With ``key`` (the gateway passes the
        caller's), a wrong or missing route key refuses everything before anything is scored.
        Returns the answering decisions in input order, after they are committed.
        """
        import pandas as pd

        # The gateway scores as the platform on behalf of a caller holding the route's key;
        # a manager trying a route from a notebook acts under their own permission.
        if key is not None or self.principal.role is Role.PLATFORM:
            self.check_route_key(route, key)  # type: ignore[attr-defined]
        frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(list(inputs))
        subjects = list(subject_ids) if subject_ids is not None else [None] * len(frame)
        if len(subjects) != len(frame):
            raise InvalidInput(
                f"route {route}: {len(subjects)} subject ids for {len(frame)} input rows"
            )
        records = frame.to_dict(orient="records")
        spec = self.route_spec(route)  # type: ignore[attr-defined]
        decisions = [
            spec.decide(row, subject) for row, subject in zip(records, subjects, strict=True)
        ]
        answers: list[views.Decision | None] = [None] * len(frame)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, decision in enumerate(decisions):
            groups.setdefault((decision.deployment, decision.rule), []).append(i)
        for (deployment, rule), rows in groups.items():
            scored = self.score_deployment(
                deployment,
                frame.iloc[rows],
                subject_ids=[subjects[i] for i in rows],
                explain=explain,
                route=route,
                rule=rule,
                caller=caller,
            )
            for i, answer in zip(rows, scored, strict=True):
                answers[i] = answer
        shadows: dict[str, list[int]] = {}
        for i, decision in enumerate(decisions):
            if decision.shadow:
                shadows.setdefault(decision.shadow, []).append(i)
        for deployment, rows in shadows.items():
            self.score_deployment(
                deployment,
                frame.iloc[rows],
                subject_ids=[subjects[i] for i in rows],
                explain=explain,
                route=route,
                rule="shadow",
                caller=caller,
                shadow=True,
            )
        return [a for a in answers if a is not None]


def _decision(
    record, seq, prev_hash, hash_, at, deployment, ref, verified, *, outcome=None, outcome_at=None
) -> views.Decision:  # type: ignore[no-untyped-def]
    output = record["output"] or {}
    return views.Decision(
        request_id=record["request_id"],
        subject_id=record["subject_id"],
        deployment=deployment,
        model_ref=ref,
        artifact_sha256=record["artifact_sha256"],
        at=at,
        inputs=record["inputs"],
        output=output,
        prediction=output.get("prediction"),
        score=output.get("score"),
        reasons=record["reasons"],
        explanation=record["explanation"],
        latency_ms=record["latency_ms"],
        seq=seq,
        prev_hash=prev_hash,
        hash=hash_,
        route=record["route"],
        rule=record["rule"],
        shadow=record["shadow"],
        caller=record["caller"],
        confidence=record["confidence"],
        link_verified=verified,
        outcome=outcome,
        outcome_at=outcome_at,
    )


def _link_ok(s, row: t.PredictionRecord) -> bool:
    """This record's hash recomputes, and its prev_hash is its predecessor's hash."""
    if row.seq == 1:
        expected = GENESIS
    else:
        expected = s.scalar(
            select(t.PredictionRecord.hash).where(
                t.PredictionRecord.deployment_id == row.deployment_id,
                t.PredictionRecord.seq == row.seq - 1,
            )
        )
    return row.prev_hash == expected and record_hash(row.prev_hash, chain_record(row)) == row.hash


def _one_per_row(name: str, values: list[Any] | None, n: int) -> list[Any] | None:
    if values is None:
        return None
    values = list(values)
    if len(values) != n:
        raise InvalidInput(f"{name} has {len(values)} entries for {n} rows")
    return values


def _outcome_key(item: dict[str, Any]) -> tuple[str, Any]:
    keys = [k for k in ("request_id", "subject_id") if item.get(k) is not None]
    if len(keys) != 1 or "outcome" not in item:
        raise InvalidInput(
            f"each outcome needs exactly one of request_id or subject_id, and an outcome: {item}"
        )
    return keys[0], item[keys[0]]


def _plain_row(row: Any) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    """A JSON-ready Python value (numpy scalars unwrapped, missing as None)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | Date):
        return value.isoformat()
    return value
