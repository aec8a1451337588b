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
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import InvalidInput, InvalidTransition, NexmlError, NotFound
from ..governance import lifecycle
from ..governance.audit import GENESIS, canonical_json, record_hash
from ..governance.naming import format_ref
from ..governance.roles import Role
from ..store import tables as t
from ..store.database import Database
from ..store.decision_log import DecisionLog, Receipt
from . import views
from .audit import _when
from .core import WorkspaceCore, chain_record

if TYPE_CHECKING:
    import pandas as pd

    from ..ml.served_model import ServedModel
    from .routes import ServingState

_LOGS: weakref.WeakKeyDictionary[Database, DecisionLog] = weakref.WeakKeyDictionary()
_LOGS_LOCK = threading.Lock()
# artifact hash -> the model as served: its explainer and, per cutoff, the explanation
# background and reason-code baseline (computing the baseline scores the whole training set,
# far too slow to repeat per request). Keyed by the hash, so a changed artifact never hits.
_SERVED: OrderedDict[str, ServedModel] = OrderedDict()
_SERVED_LOCK = threading.Lock()
_SERVED_SIZE = 32
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
        pending = self._prepare_deployment(
            deployment,
            inputs,
            subject_ids=subject_ids,
            explain=explain,
            route=route,
            rule=rule,
            caller=caller,
            request_ids=request_ids,
            shadow=shadow,
            state=None,
            warm_only=False,
        )
        return pending.finish(decision_log(self._db).submit(pending.records))

    def _prepare_deployment(
        self,
        deployment: str,
        inputs: list[dict[str, Any]] | pd.DataFrame,
        *,
        subject_ids: list[str | None] | None,
        explain: bool,
        route: str | None,
        rule: str | None,
        caller: str | None,
        request_ids: list[str] | None,
        shadow: bool,
        state: ServingState | None,
        warm_only: bool,
    ) -> PendingDecisions:
        """``score_deployment`` up to the commit: the rows scored and explained, their records
        not yet committed. ``state`` is the serving state ``predict`` already read for this
        request (None: read it here). With ``warm_only``, raise ``Cold`` (nothing done) instead
        of reading and loading a served version, or preparing an explanation reference, not
        yet cached."""
        import pandas as pd

        started = time.perf_counter()
        self._authorize("model.score", f"deployment {deployment}")
        if not isinstance(inputs, pd.DataFrame):
            inputs = list(inputs)
        n = len(inputs)
        if n == 0:
            raise InvalidInput(f"nothing to score on {deployment!r}: no rows")
        subject_ids = _one_per_row("subject_ids", subject_ids, n) or [None] * n
        request_ids = _one_per_row("request_ids", request_ids, n) or [
            uuid.uuid4().hex for _ in range(n)
        ]
        served = self._served_version(deployment, state, warm_only=warm_only)
        if not (shadow or served["answers"]):
            raise InvalidTransition(
                f"cannot answer on {deployment!r}: it is a shadow-only deployment (it serves "
                f"{served['ref']}, not deployed); it may only shadow a route"
            )
        model = served["model"]
        scorer = _served_model(model, served["artifact_sha256"])
        # A small clean batch of records is scored with no DataFrame (the gateway's requests);
        # its rows are then the records, which the explainer reads with their encoding. Binary
        # models only: _outputs predicts other models' labels from a frame.
        fast = (
            scorer.score_records(inputs)
            if isinstance(inputs, list) and model.problem_type == "binary"
            else None
        )
        rows: pd.DataFrame | list[dict[str, Any]]
        if fast is not None:
            values, scored, encoded = fast
            rows = inputs
        else:
            frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(inputs)
            rows = model.validate(frame)  # InvalidInput naming every bad field: nothing recorded
            scored, encoded = scorer.score(rows)
            values = {str(c): [_plain(v) for v in rows[c].tolist()] for c in rows.columns}
        columns = list(values)  # each input column's values, in schema order
        inputs_of = [
            dict(zip(columns, row, strict=True)) for row in zip(*values.values(), strict=True)
        ]
        scores = [float(v) for v in scored]
        binary = model.problem_type == "binary"
        outputs, reasons, explanations = self._outputs(
            model, rows, scores, served, explain, encoded, warm_only=warm_only
        )
        latency = (time.perf_counter() - started) * 1000.0
        at = None if self._clock is None else self._now()  # None: the decision log stamps it
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
                "inputs": inputs_of[i],
                "output": outputs[i],
                "confidence": max(scores[i], 1 - scores[i]) if binary else None,
                "explanation": explanations[i],
                "reasons": reasons[i],
                "caller": caller or self.principal.name,
                "latency_ms": latency,
                "at": at,
            }
            for i in range(n)
        ]
        return PendingDecisions(records, [(deployment, served["ref"])] * n)

    def find_decisions(
        self,
        *,
        request_id: str | None = None,
        subject_id: str | None = None,
        date: Date | str | None = None,
        since: datetime | Date | str | None = None,
        until: datetime | Date | str | None = None,
        deployment: str | None = None,
        route: str | None = None,
        limit: int = 100,
    ) -> list[views.Decision]:
        """Recorded decisions, oldest first, with each record's chain proof.

        ``date`` is one UTC day; ``since``/``until`` a range (a bare ``until`` date includes
        that day); ``route`` the route a decision was asked through. Each call by a person
        appends a ``prediction.read`` event naming the query and the request ids returned.
        Raises PermissionDenied, InvalidInput (a bad limit, a period that ends before it starts).
        """
        self._authorize("prediction.read", "prediction records")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit!r}")
        if since is not None and until is not None and (
            _when(since, end=False) > _when(until, end=True)
        ):
            raise InvalidInput(f"the period starts after it ends: {since} is after {until}")
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
        if route:
            query = query.where(P.route == route)
        with self._read() as s:
            rows = s.execute(query).all()
            before = _predecessors(s, [row for row, *_ in rows])
            found = [
                _decision(
                    chain_record(row),
                    row.seq,
                    row.prev_hash,
                    row.hash,
                    row.at,
                    dep,
                    format_ref(model, version),
                    _link_ok(row, before.get((row.deployment_id, row.seq - 1))),
                    outcome=row.outcome,
                    outcome_at=row.outcome_at,
                )
                for row, dep, model, version in rows
            ]
        if self.principal.role is not Role.PLATFORM:
            asked = {
                "request_id": request_id,
                "subject_id": subject_id,
                "date": date,
                "since": since,
                "until": until,
                "deployment": deployment,
                "route": route,
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

    def record_outcomes(
        self,
        outcomes: list[dict[str, Any]],
        *,
        route: str | None = None,
        key: str | None = None,
        caller: str | None = None,
    ) -> int:
        """Attach actual outcomes to past predictions; returns how many records got one.

        Each item is ``{"request_id": ..., "outcome": ...}`` or ``{"subject_id": ...,
        "outcome": ...}`` (every prediction about that subject). Outcomes are outside the
        records' hashes (they arrive later by design); each call appends a
        ``prediction.outcome`` event holding them. All or nothing, in one transaction.

        With ``route``, only decisions made through that route are reached (its answers and
        its shadow's records), and the route key is checked first when ``key`` is given (the
        gateway passes its caller's) or when acting as the platform: a wrong or missing key
        refuses everything. ``caller`` labels who sent them in the event.
        Raises AuthenticationFailed, PermissionDenied, InvalidInput (naming each bad item),
        NotFound (naming each id matching no prediction this call may reach).
        """
        return len(self.attach_outcomes(outcomes, route=route, key=key, caller=caller))

    def attach_outcomes(
        self,
        outcomes: list[dict[str, Any]],
        *,
        route: str | None = None,
        key: str | None = None,
        caller: str | None = None,
    ) -> list[str]:
        """:meth:`record_outcomes`, returning the request ids of the records that got an
        outcome (each once, in the order the items reached them)."""
        if route is not None and (key is not None or self.principal.role is Role.PLATFORM):
            self.check_route_key(route, key)  # type: ignore[attr-defined]
        elif key is not None:
            raise InvalidInput("a route key was given without its route; nothing was recorded")
        self._authorize(
            "prediction.outcome",
            f"predictions of route {route}" if route is not None else "prediction records",
        )
        items = _outcome_items(outcomes)
        P = t.PredictionRecord
        through = f" through route {route}" if route is not None else ""
        with self._write() as s:
            reached: list[list[t.PredictionRecord]] = []
            missing: dict[str, str] = {}
            for i, (field, ident, _) in enumerate(items):
                column = P.request_id if field == "request_id" else P.subject_id
                query = select(P).where(column == ident).order_by(P.id).with_for_update()
                if route is not None:
                    query = query.where(P.route == route)
                rows = list(s.scalars(query))
                if not rows:
                    missing[f"outcomes.{i}.{field}"] = (
                        f"no prediction recorded{through} with {field} {ident!r}"
                    )
                reached.append(rows)
            if missing:
                error = NotFound("; ".join(missing.values()) + "; nothing was recorded")
                error.problems = missing  # type: ignore[attr-defined]
                raise error
            given: dict[str, tuple[bytes, int]] = {}  # request id -> (outcome, first item)
            clashes: dict[str, str] = {}
            for i, ((field, ident, value), rows) in enumerate(zip(items, reached, strict=True)):
                encoded = canonical_json(value)
                for row in rows:
                    first = given.setdefault(row.request_id, (encoded, i))
                    if first[0] != encoded:
                        clashes[f"outcomes.{i}.outcome"] = (
                            f"request {row.request_id} (by {field} {ident!r}) was given another "
                            f"outcome by outcomes.{first[1]}"
                        )
            if clashes:
                _invalid_outcomes("contradictory outcomes", clashes)
            now = self._now()
            attached = []
            for (field, ident, value), rows in zip(items, reached, strict=True):
                for row in rows:
                    row.outcome, row.outcome_at = value, now
                attached.append(
                    {field: ident, "outcome": value, "requests": [r.request_id for r in rows]}
                )
            s.flush()
            extra: dict[str, Any] = {}
            if route is not None:
                extra["route"] = route
            if caller is not None:
                extra["caller"] = caller
            self._event(
                s,
                "prediction.outcome",
                "predictions",
                outcomes=attached,
                records=len(given),
                **extra,
            )
        return list(given)

    # --- helpers -----------------------------------------------------------------------------

    def _served_version(
        self, deployment: str, state: ServingState | None = None, *, warm_only: bool = False
    ) -> dict[str, Any]:
        """What deployment ``deployment`` serves (ids, ref, artifact hash, lineage, template,
        protected columns and the loaded, hash-verified model), cached in the serving state of
        this request (read here when None), so a deploy, rollback or retire takes effect on the
        next request. Raises NotFound, InvalidTransition (not active)."""
        if state is None:
            state, _ = self._serving_snapshot(None)  # type: ignore[attr-defined]
        cached = state.served.get(deployment)
        if cached is not None:
            return cached
        if warm_only:
            raise Cold(f"deployment {deployment} is not loaded for this serving state")
        served = self._read_served_version(deployment)  # read after the fingerprint
        served["protected"] = self._protected_of(  # type: ignore[attr-defined]
            {"lineage": served["lineage"], "template": served["template"]}
        )
        served["model"] = self._load_model(served["ref"])  # type: ignore[attr-defined]
        state.served[deployment] = served
        return served

    def _read_served_version(self, deployment: str) -> dict[str, Any]:
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
                "answers": lifecycle.answers(mv.status),  # False: a shadow-only deployment
            }

    def _outputs(self, model, rows, scores, served, explain, encoded=None, *, warm_only=False):  # type: ignore[no-untyped-def]
        """Per row: the output, the reasons (declined binary rows) and the explanation.
        ``encoded``: the rows' encoding from scoring them, if the explainer reads it."""
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
        background, baseline = self._reason_reference(model, served, cutoff, warm_only)
        explainer = _served_model(model, served["artifact_sha256"]).explainer
        assert explainer is not None  # binary
        local = (
            explainer.local(rows, background=background, encoded=encoded) if explain else None
        )
        reasons = explainer.reasons(
            rows,
            scores,
            baseline=baseline,
            cutoff=cutoff,
            explanation=local,
            encoded=encoded,
            protected=served["protected"],
        )
        return (
            outputs,
            [[r.to_dict() for r in row] for row in reasons],
            [local.to_dict(i) if local is not None else {} for i in range(n)],
        )

    def _reason_reference(self, model, served, cutoff: float, warm_only: bool = False):  # type: ignore[no-untyped-def]
        """(explanation background, reason-code baseline) of the model for ``cutoff``, as
        ``explain.Reference`` prepared once per artifact and cutoff from the training data
        (the background is None for tree models, which need none). With ``warm_only``, Cold
        when they are not prepared yet."""

        def training_data() -> pd.DataFrame:
            if warm_only:
                raise Cold(f"the explanation reference of {served['ref']} is not prepared")
            datasets = (served.get("lineage") or {}).get("datasets") or []
            if not datasets:
                raise InvalidInput(
                    f"cannot explain decisions of {served['ref']}: it records no training data"
                )
            # The platform reads the training data; the caller needs no dataset access.
            return self._as_platform().load_dataset(datasets[0]["ref"])  # type: ignore[attr-defined]

        return _served_model(model, served["artifact_sha256"]).references(
            cutoff, training_data, background_rows=_BACKGROUND_ROWS
        )

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
        Returns the answering decisions in input order, after they are committed: all of the
        request's records (shadow ones included) in one transaction, or none.
        """
        pending = self.prepare_predict(
            route, inputs, subject_ids=subject_ids, explain=explain, key=key, caller=caller
        )
        return pending.finish(decision_log(self._db).submit(pending.records))

    def prepare_predict(
        self,
        route: str,
        inputs: list[dict[str, Any]] | pd.DataFrame,
        *,
        subject_ids: list[str | None] | None = None,
        explain: bool = True,
        key: str | None = None,
        caller: str | None = None,
        warm_only: bool = False,
    ) -> PendingDecisions:
        """:meth:`predict` up to the commit: the request routed, scored and explained, its
        records (answers, then shadow records) not yet committed. Whoever calls this commits
        ``records`` through the database's decision log and answers with ``finish`` of the
        receipts (the gateway's event loop does, committing many requests together).

        With ``warm_only``, raises ``Cold`` before anything is scored when serving the request
        would first have to load a model or prepare its explanation reference (seconds of
        work the event loop must not do); refusals (key, route, input) are raised as usual.
        """
        import pandas as pd

        # The gateway scores as the platform on behalf of a caller holding the route's key;
        # a manager trying a route from a notebook acts under their own permission. One read:
        # the key is checked against the hash just read, before anything else is done.
        spec, state = self._route_for_request(  # type: ignore[attr-defined]
            route, key, check_key=key is not None or self.principal.role is Role.PLATFORM
        )
        batch: pd.DataFrame | list[Any]  # the rows as given: a frame, or records
        if isinstance(inputs, pd.DataFrame):
            batch = inputs
            # only rules read the fields; a route without rules needs no per-row copy
            records = batch.to_dict(orient="records") if spec.rules else [{}] * len(batch)
        else:  # records stay records: _prepare_deployment makes a frame only if it needs one
            batch = records = list(inputs)
        subjects = list(subject_ids) if subject_ids is not None else [None] * len(batch)
        if len(subjects) != len(batch):
            raise InvalidInput(
                f"route {route}: {len(subjects)} subject ids for {len(batch)} input rows"
            )
        decisions = [
            spec.decide(row, subject) for row, subject in zip(records, subjects, strict=True)
        ]
        groups: dict[tuple[str, str], list[int]] = {}
        for i, decision in enumerate(decisions):
            groups.setdefault((decision.deployment, decision.rule), []).append(i)
        shadows: dict[str, list[int]] = {}
        for i, decision in enumerate(decisions):
            if decision.shadow:
                shadows.setdefault(decision.shadow, []).append(i)
        # (rows, deployment, rule, shadow): each answering group, then each shadow
        jobs = [(rows, dep, rule, False) for (dep, rule), rows in groups.items()]
        jobs += [(rows, dep, "shadow", True) for dep, rows in shadows.items()]
        parts: list[tuple[list[int], PendingDecisions]] = []
        for rows, deployment, rule, shadow in jobs:
            if len(rows) == len(batch):
                part_rows = batch
            elif isinstance(batch, pd.DataFrame):
                part_rows = batch.iloc[rows]
            else:
                part_rows = [batch[i] for i in rows]
            part = self._prepare_deployment(
                deployment,
                part_rows,
                subject_ids=[subjects[i] for i in rows],
                explain=explain,
                route=route,
                rule=rule,
                caller=caller,
                request_ids=None,
                shadow=shadow,
                state=state,
                warm_only=warm_only,
            )
            parts.append(([] if shadow else rows, part))  # a shadow answers no row
        if len(parts) == 1 and parts[0][0] == list(range(len(batch))):
            return parts[0][1]  # one group answering every row in order: the common case
        combined = PendingDecisions([], [], [-1] * len(batch))
        for rows, part in parts:
            for record_at, i in enumerate(rows):
                combined.answer[i] = len(combined.records) + record_at  # type: ignore[index]
            combined.records += part.records
            combined.where += part.where
        return combined


class Cold(Exception):
    """Serving a request would first load a model or prepare an explanation reference
    (``prepare_predict(warm_only=True)``); nothing was scored or recorded."""


@dataclass
class PendingDecisions:
    """Scored rows' records, not yet committed, and how to answer once they are.

    ``records`` are PredictionRecord column values for ``DecisionLog.submit``; ``where`` is
    each record's (deployment, version ref); ``answer`` the records that answer, in input
    order (None: every record, in order; shadow records never answer)."""

    records: list[dict[str, Any]]
    where: list[tuple[str, str]]
    answer: list[int] | None = None

    def finish(self, receipts: list[Receipt]) -> list[views.Decision]:
        """The answering decisions, given the receipts of ``records`` (same order)."""
        if len(receipts) != len(self.records):
            raise NexmlError(f"{len(receipts)} receipts for {len(self.records)} records")
        chosen = range(len(self.records)) if self.answer is None else self.answer
        return [
            _decision(
                self.records[i],
                receipts[i].seq,
                receipts[i].prev_hash,
                receipts[i].hash,
                receipts[i].at,
                self.where[i][0],
                self.where[i][1],
                None,
            )
            for i in chosen
        ]


def _served_model(model: Any, artifact_sha256: str) -> ServedModel:
    """The ServedModel of the artifact with manifest hash ``artifact_sha256`` (made once)."""
    from ..ml.served_model import ServedModel

    with _SERVED_LOCK:
        served = _SERVED.get(artifact_sha256)
        if served is not None:
            _SERVED.move_to_end(artifact_sha256)
            return served
        served = _SERVED[artifact_sha256] = ServedModel(model)
        while len(_SERVED) > _SERVED_SIZE:
            _SERVED.popitem(last=False)
        return served


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


def _predecessors(s, rows: list[t.PredictionRecord]) -> dict[tuple[int, int], str]:
    """(deployment id, seq) -> stored hash of the record before each of ``rows``: one indexed
    query for all of them."""
    P = t.PredictionRecord
    wanted = {(r.deployment_id, r.seq - 1) for r in rows if r.seq > 1}
    if not wanted:
        return {}
    found = s.execute(  # the (deployment, seq) pairs are filtered below
        select(P.deployment_id, P.seq, P.hash).where(
            P.deployment_id.in_(sorted({d for d, _ in wanted})),
            P.seq.in_(sorted({q for _, q in wanted})),
        )
    )
    return {(d, q): h for d, q, h in found if (d, q) in wanted}


def _link_ok(row: t.PredictionRecord, before: str | None) -> bool:
    """This record's hash recomputes, and its prev_hash is its predecessor's stored hash
    (``before``; the genesis hash for the first record)."""
    expected = GENESIS if row.seq == 1 else before
    return row.prev_hash == expected and record_hash(row.prev_hash, chain_record(row)) == row.hash


def _one_per_row(name: str, values: list[Any] | None, n: int) -> list[Any] | None:
    if values is None:
        return None
    values = list(values)
    if len(values) != n:
        raise InvalidInput(f"{name} has {len(values)} entries for {n} rows")
    return values


def _outcome_items(outcomes: Any) -> list[tuple[str, str, Any]]:
    """(id field, id, JSON outcome) per item. Raises InvalidInput naming every bad item."""
    import json

    if isinstance(outcomes, dict | str | bytes) or not outcomes:
        raise InvalidInput("no outcomes given: expected a non-empty list of items")
    items: list[tuple[str, str, Any]] = []
    problems: dict[str, str] = {}
    for i, item in enumerate(outcomes):
        where = f"outcomes.{i}"
        keys = (
            [k for k in ("request_id", "subject_id") if item.get(k) is not None]
            if isinstance(item, dict)
            else []
        )
        if len(keys) != 1 or "outcome" not in item:
            problems[where] = (
                "each outcome needs exactly one of request_id or subject_id, and an outcome: "
                f"{item!r}"
            )
            continue
        ident = str(item[keys[0]])
        if not ident or "\x00" in ident:
            problems[f"{where}.{keys[0]}"] = "must be a non-empty text without NUL characters"
            continue
        try:
            value = json.loads(canonical_json(item["outcome"]), parse_constant=_not_finite)
        except (TypeError, ValueError) as exc:
            problems[f"{where}.outcome"] = f"not a JSON value ({exc})"
            continue
        items.append((keys[0], ident, value))
    if problems:
        _invalid_outcomes("outcomes refused", problems)
    return items


def _not_finite(constant: str) -> Any:
    raise ValueError(f"{constant} is not a finite number")


def _invalid_outcomes(message: str, problems: dict[str, str]) -> None:
    listed = "; ".join(f"{k}: {v}" for k, v in problems.items())
    error = InvalidInput(f"{message}, nothing was recorded: {listed}")
    error.problems = problems  # type: ignore[attr-defined]
    raise error


def _plain(value: Any) -> Any:
    """A JSON-ready Python value (numpy scalars unwrapped, missing as None)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | Date):
        return value.isoformat()
    return value
