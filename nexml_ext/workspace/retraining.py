"""Continuous training: retrain a deployed model into staging, and shadow a challenger.

``retrain(deployment, source=...)`` queues a ``retrain`` job (``nexml_ext.jobs.retrain``); a
worker runs it as the platform through :meth:`RetrainingMixin._retrain`:

1. read the latest labelled data from the source and register it as the next version of
   ``<deployment>-labelled`` (``dataset.register``), then split it, seeded and stratified, into
   ``…-labelled-train`` and ``…-labelled-holdout`` (two more ``dataset.register`` events);
2. run AutoML on the training part with the champion's settings — backend, problem type,
   target, selection metric, seed, inputs, protected attributes kept out (and any justified
   ones kept in), preprocessing or AutoGluon presets — (``model.train``);
3. register the challenger in staging (``model.register``): its author is the person who asked
   for the retraining (or the platform, when the platform asked), who chose when and on what
   data, so the existing rule "nobody decides on a version they authored" keeps them from
   approving it; the champion's compliance sections are carried over (same model, same
   purpose), for the reviewer to check;
4. have the platform make the comparison report (``notebooks/comparison.ipynb``): champion and
   challenger validated on the same holdout, side by side. Finishing it records the
   challenger's platform validation, linked to the report, which is what approval rests on;
5. record the report's recommendation (promote / keep champion, with the metric deltas) as a
   ``model.recommend`` event and in the challenger's lineage, where ``ws.version(ref)`` shows it.

It never deploys. ``shadow(ref, name=..., route=...)`` is the separate, audited way to compare a
staging (or approved, not yet deployed) version on live traffic: a shadow-only deployment that a
route may name as its shadow only (``governance.lifecycle.check_answering``), scored and
recorded beside each answer and never returned.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..deploy import sizes
from ..errors import InvalidInput, InvalidTransition, NotFound
from ..governance import lifecycle, routing
from ..governance.audit import GENESIS
from ..governance.lifecycle import Status
from ..governance.naming import check_name, format_ref
from ..store import tables as t
from . import views
from .core import WorkspaceCore
from .routes import _check_answering, _fill, _schemas, _spec_of
from .training import protected_columns

#: Default AutoML time limit (seconds) when neither the job nor the champion's run names one.
DEFAULT_TIME_LIMIT = 60.0
MAX_TIME_LIMIT = 3600.0
HOLDOUT_SHARE = 0.25

Progress = Callable[[float, str], None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class ChampionSettings:
    """How the champion was trained, as far as its version records it: what a retraining
    repeats on the new data."""

    deployment: str
    champion: str  # NAME:VERSION
    model: str
    template: str | None
    author: str
    target: str
    problem_type: str
    backend: str
    metric: str | None
    seed: int
    time_limit: float
    features: tuple[str, ...]
    protected: tuple[str, ...]
    protected_inputs: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None
    reason_codes: dict[str, str] = field(default_factory=dict)
    from_training_run: bool = True  # False: read from the artifact alone (no AutoML lineage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "problem_type": self.problem_type, "target": self.target,
            "metric": self.metric, "seed": self.seed, "time_limit": self.time_limit,
            "features": list(self.features), "protected": list(self.protected),
            "protected_inputs": list(self.protected_inputs.get("attributes") or []),
            "preprocess": self.preprocess, "from_training_run": self.from_training_run,
        }


class RetrainingMixin(WorkspaceCore):
    # --- asking -------------------------------------------------------------------------------

    def retrain(
        self,
        deployment: str,
        *,
        source: str | dict[str, Any] | None = None,
        time_limit: float | None = None,
        now: bool = False,
    ) -> views.Job:
        """Queue the retraining of the model deployment ``deployment`` serves (a worker runs it).

        ``source`` is the labelled data: a CSV/Parquet path or fsspec URL, or a mapping
        ``{"uri": SQL URL, "table" | "query": ..., "format": ...}`` as ``ingest`` reads it
        (credentials never belong in it: job parameters are stored and audited); omitted, the
        source configured for the deployment's monitor, if any. ``time_limit`` bounds AutoML
        (seconds; default the champion's). The challenger lands in staging with a comparison
        report and a recommendation; nothing is deployed. Needs ``model.retrain`` (managers;
        data scientists for their own models). Raises PermissionDenied, NotFound,
        InvalidTransition (the deployment is not active or only shadows), InvalidInput.

        ``now`` runs the job here and now, in this process, as a worker would (the platform
        acting for the submitter), and returns it finished; a failure ends it ``failed`` with
        the error, as in a worker.
        """
        params: dict[str, Any] = {"deployment": deployment}
        if source is not None:
            params["source"] = source
        if time_limit is not None:
            params["time_limit"] = time_limit
        job = self.submit_job("retrain", params)  # type: ignore[attr-defined]
        return self._run_job_here(job.id) if now else job

    def _run_job_here(self, job_id: int) -> views.Job:
        """Claim queued job ``job_id`` (one's own) and run it in this process as the platform,
        with the worker's own machinery (heartbeat, log, finish event)."""
        import os
        import socket

        from ..jobs import registry
        from ..jobs.worker import Worker

        runner = Worker(self._as_platform(), name=f"{socket.gethostname()}:{os.getpid()}")
        claim = runner.platform._claim_job(
            runner.id, registry.kinds(), job_id=job_id, created_by=self.principal.name
        )
        if claim is None:
            raise InvalidTransition(
                f"cannot run job {job_id} here: it is not a queued job of {self.principal.name}"
            )
        return runner._run(claim)

    def retraining_settings(self, deployment: str) -> ChampionSettings:
        """The settings a retraining of ``deployment`` would repeat (its champion's)."""
        self._authorize("model.view", f"deployment {deployment}")
        return self._champion_settings(deployment)

    def configured_source(self, deployment: str) -> Any:
        """The labelled-data source configured for ``deployment``'s monitor, or None."""
        found = [m for m in self.monitors() if m.deployment == deployment]  # type: ignore[attr-defined]
        return found[0].source if found else None

    # --- shadow-only deployments ----------------------------------------------------------

    def shadow(
        self, ref: str, *, name: str, route: str | None = None, size: str = "small"
    ) -> views.Deployment:
        """Put staging (or approved, not yet deployed) version ``ref`` on the shadow-only
        deployment ``name``, and with ``route`` make it that route's shadow, in one transaction.

        A shadow-only deployment serves a version that is not ``deployed``: a route may name it
        as its shadow (every request is then also scored by it and recorded, marked shadow) but
        never as its default, a rule's target or its canary, and no route key reaches it
        directly — its answers are never returned. The version's status does not change. An
        existing shadow-only deployment of the same model is switched to ``ref``. Managers only
        (``model.shadow``, and ``route.manage`` with ``route``); the artifact is re-verified
        first; ``model.shadow`` (and ``route.set``) are events. Raises PermissionDenied,
        InvalidTransition, InvalidInput, NotFound, IntegrityError.
        """
        self._authorize("model.shadow", ref)
        if route is not None:
            self._authorize("route.manage", f"route {route}")
        check_name("deployment", name)
        sizes.get(size)
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            lifecycle.check_shadow_source(ref, version.status)
            deployment = self._deployment_row(s, name, required=False)  # type: ignore[attr-defined]
            previous = None
            if deployment is not None:
                served = deployment.model_version
                served_ref = format_ref(served.model.name, served.version)
                if deployment.model_id != version.model_id:
                    raise InvalidInput(
                        f"cannot shadow {ref} as {name!r}: that deployment serves model "
                        f"{served.model.name}; choose another name"
                    )
                if deployment.status == "active" and lifecycle.answers(served.status):
                    raise InvalidInput(
                        f"cannot shadow {ref} as {name!r}: that deployment answers requests "
                        f"(it serves {served_ref}, deployed); choose another name"
                    )
                previous = served_ref if served.id != version.id else None
            self._verify_artifact("shadow", ref, version)  # type: ignore[attr-defined]
            if deployment is None:
                s.add(t.ChainHead(chain=f"predictions:{name}", seq=0, hash=GENESIS))
                deployment = t.Deployment(
                    name=name, model_id=version.model_id, model_version_id=version.id,
                    size=size, created_by=self.principal.name,
                )
                s.add(deployment)
            else:
                deployment.model_version_id = version.id
                deployment.model_version = version
                deployment.size, deployment.status = size, "active"
            s.flush()
            self._event(
                s, "model.shadow", f"deployment:{name}", version=ref, status=version.status,
                previous=previous, size=size, route=route,
                artifact_sha256=version.artifact_sha256,
            )
            if route is not None:
                self._set_shadow(s, route, name)
            return self._deployment_view(deployment)  # type: ignore[attr-defined]

    def _set_shadow(self, s: Any, route: str, deployment: str) -> None:
        row = self._route_row(s, route, lock=True)  # type: ignore[attr-defined]
        before = _spec_of(s, row)
        active = self._active_deployments(s)  # type: ignore[attr-defined]
        parsed = routing.parse_route({**before, "shadow": deployment}, _schemas(active),
                                     name=route)
        _check_answering(parsed, active)
        _fill(row, parsed, {d.name: d.id for d in active})
        s.flush()
        self._event(s, "route.set", f"route:{route}", before=before, after=parsed.to_dict(),
                    key_issued=False)

    # --- the job's work (as the platform) ----------------------------------------------------

    def _retrain(
        self,
        params: dict[str, Any],
        *,
        requested_by: str,
        job_id: int | None,
        progress: Progress,
        log: Log,
    ) -> dict[str, Any]:
        """Run one retraining (see the module doc). ``params`` were checked at submission."""
        from ..ml.automl import train as automl_train
        from ..ml.connectors import read_source

        deployment = params["deployment"]
        self._authorize("model.retrain", f"deployment {deployment}")
        plan = self._champion_settings(deployment)
        loaded = self._load_model(plan.champion)  # type: ignore[attr-defined]
        plan = replace(plan, reason_codes=dict(getattr(loaded, "reason_codes", None) or {}))
        time_limit = float(params.get("time_limit") or plan.time_limit)
        source = dict(params["source"])
        log(f"retraining {plan.champion} (deployment {deployment}) for {requested_by}: "
            f"{plan.backend} {plan.problem_type} on {plan.target}, time limit {time_limit:g} s")

        progress(0.05, "reading the labelled data")
        frame, origin = read_source(
            source["uri"], table=source.get("table"), query=source.get("query"),
            format=source.get("format"),
        )
        _check_columns(frame, plan)
        base = f"{deployment[:47]}-labelled"
        labelled = self.register_dataset(  # type: ignore[attr-defined]
            frame, base, source={**origin, "retraining": deployment, "requested_by": requested_by}
        )
        log(f"labelled data {labelled.ref}: {labelled.row_count} rows from "
            f"{origin.get('uri') or origin.get('kind')}")
        classifier = plan.problem_type in ("binary", "multiclass")
        train_v, holdout_v = self.split(  # type: ignore[attr-defined]
            labelled.ref, plan.target, test_size=HOLDOUT_SHARE, seed=plan.seed,
            stratify=classifier,
        )
        log(f"split {labelled.ref} into {train_v.ref} ({train_v.row_count} rows) and holdout "
            f"{holdout_v.ref} ({holdout_v.row_count} rows), seed {plan.seed}")

        progress(0.15, f"training with {plan.champion}'s settings")
        training = self.load_dataset(train_v.ref)  # type: ignore[attr-defined]
        present = [c for c in plan.protected if c in training.columns]
        keep = set(plan.features) | {plan.target} | set(present)
        run = automl_train(
            training, plan.target, problem_type=plan.problem_type, time_limit=time_limit,
            metric=plan.metric, backend=plan.backend, protected=present,
            exclude=[c for c in training.columns if c not in keep],
            allow_protected_inputs=list(plan.protected_inputs.get("attributes") or []),
            justification=plan.protected_inputs.get("justification"),
            seed=plan.seed, preprocess=_preprocess_spec(plan), progress=False,
        )
        if sorted(run.features) != sorted(plan.features):
            raise InvalidInput(
                f"cannot retrain {plan.champion}: the challenger's inputs "
                f"{', '.join(run.features)} differ from the champion's {', '.join(plan.features)}"
            )
        with self._write() as s:
            self._event(
                s, "model.train", f"dataset:{train_v.ref}", job=job_id, backend=run.backend,
                champion=run.champion_name, protected=list(run.protected),
                protected_inputs=run.lineage().get("protected_inputs"),
                retraining=deployment, settings_from=plan.champion, requested_by=requested_by,
            )
        log(f"AutoML champion {run.champion_name} ({run.metric} "
            f"{float(run.leaderboard['score_val'].iloc[0]):.4f} in cross-validation)")

        progress(0.45, "registering the challenger in staging")
        retraining = {
            "deployment": deployment, "champion": plan.champion, "requested_by": requested_by,
            "job": job_id, "labelled": labelled.ref, "train": train_v.ref,
            "holdout": holdout_v.ref, "source": origin, "settings": plan.to_dict(),
        }
        challenger = self._register_challenger(run, plan, train_v.ref, requested_by, retraining)
        log(f"challenger {challenger.ref} registered in staging, author {challenger.author}")

        progress(0.55, "making the comparison report")
        report = self.make_report(  # type: ignore[attr-defined]
            "comparison", subject=challenger.ref, dataset=holdout_v.ref,
            requested_by=requested_by, job_id=job_id,
        )
        validation_id = report.summary.get("validation_id")
        log(f"comparison report {report.id} made (html sha256 {report.html_sha256}); "
            f"validation {validation_id} recorded: {report.summary.get('status')}")

        progress(0.9, "recording the recommendation")
        recommendation = dict(report.summary.get("recommendation") or {})
        if recommendation.get("challenger") != challenger.ref:
            raise InvalidInput(
                f"the comparison report {report.id} recommends nothing about {challenger.ref}"
            )
        with self._write() as s:
            row = self._version_row(s, challenger.ref, lock=True)
            lineage = dict(row.lineage or {})
            lineage["retraining"] = {
                **dict(lineage.get("retraining") or {}),
                "report": report.id,
                "validation": validation_id,
                "recommendation": recommendation,
            }
            row.lineage = lineage
            s.flush()
            self._event(
                s, "model.recommend", challenger.ref, recommendation=recommendation["decision"],
                reason=recommendation.get("reason"), champion=plan.champion,
                deployment=deployment, deltas=recommendation.get("deltas"),
                primary=recommendation.get("primary"), report=report.id,
                validation=validation_id, holdout=holdout_v.ref, requested_by=requested_by,
            )
        log(f"recommendation: {recommendation['decision']} ({recommendation.get('reason')}); "
            "nothing was deployed: approval stays with a person")
        return {
            "deployment": deployment,
            "champion": plan.champion,
            "challenger": challenger.ref,
            "author": challenger.author,
            "labelled": labelled.ref,
            "train": train_v.ref,
            "holdout": holdout_v.ref,
            "report": report.id,
            "html_sha256": report.html_sha256,
            "validation": validation_id,
            "validation_status": report.summary.get("status"),
            "recommendation": recommendation["decision"],
            "reason": recommendation.get("reason"),
            "deltas": recommendation.get("deltas"),
        }

    def _champion_settings(self, deployment: str) -> ChampionSettings:
        with self._read() as s:
            row = s.execute(
                select(t.Deployment).where(t.Deployment.name == deployment)
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"deployment {deployment!r} not found")
            version = row.model_version
            ref = format_ref(version.model.name, version.version)
            if row.status != "active":
                raise InvalidTransition(
                    f"cannot retrain {deployment!r}: the deployment is {row.status}"
                )
            if not lifecycle.answers(version.status):
                raise InvalidTransition(
                    f"cannot retrain {deployment!r}: it is a shadow-only deployment of {ref} "
                    f"({version.status}); retrain the deployment that answers"
                )
            template = version.model.template
            lineage = dict(version.lineage or {})
            training = dict(lineage.get("training") or {})
            schema_columns = list((version.input_schema or {}).get("columns") or {})
            author, problem, target = version.author, version.problem_type, version.target
            flavour = version.flavour
        if problem not in ("binary", "multiclass", "regression") or not target:
            raise InvalidInput(
                f"cannot retrain {ref}: a {problem or 'unknown'} model without labelled target "
                "cannot be validated on a holdout"
            )
        search = dict(training.get("search") or {})
        used = dict(training.get("protected_inputs") or {})
        return ChampionSettings(
            deployment=deployment,
            champion=ref,
            model=ref.split(":", 1)[0],
            template=template,
            author=author,
            target=training.get("target") or target,
            problem_type=training.get("problem_type") or problem,
            backend=training.get("backend") or ("autogluon" if flavour == "autogluon"
                                                else "sklearn"),
            metric=training.get("metric"),
            seed=int(training.get("seed") or 0),
            time_limit=float(training.get("time_limit") or DEFAULT_TIME_LIMIT),
            features=tuple(training.get("features") or schema_columns),
            protected=tuple(training.get("protected") or protected_columns(lineage, template)),
            protected_inputs=used if used.get("attributes") else {},
            preprocess=search.get("preprocess"),
            from_training_run=bool(training),
        )

    def _register_challenger(
        self,
        run: Any,
        plan: ChampionSettings,
        train_ref: str,
        requested_by: str,
        retraining: dict[str, Any],
    ) -> views.ModelVersion:
        """The challenger as the next version of the champion's model, in staging, authored by
        whoever asked for the retraining; the champion's compliance sections carried over."""
        from ..ml.artifact import read_metadata

        with tempfile.TemporaryDirectory(prefix="nexml-retrain-") as tmp:
            directory = run.save(Path(tmp) / "artifact", reason_codes=plan.reason_codes or None)
            metadata = read_metadata(directory)
            stored = self._store.put_directory(directory, f"models/{plan.model}/{uuid.uuid4().hex}")
        with self._write() as s:
            model = self._model_row(s, plan.model)
            champion = self._version_row(s, plan.champion)
            champion_record = self._record_row(s, champion)  # type: ignore[attr-defined]
            number = self._next_number(s, t.ModelVersion.version,
                                       t.ModelVersion.model_id == model.id)
            lineage = {
                "datasets": [self._dataset_lineage(s, train_ref)],  # type: ignore[attr-defined]
                "training": {"job": retraining.get("job"), **run.lineage()},
                "protected_inputs": list((champion.lineage or {}).get("protected_inputs") or []),
                "retraining": retraining,
            }
            version = t.ModelVersion(
                model=model, version=number, status=Status.STAGING.value, author=requested_by,
                artifact_uri=stored.uri, artifact_sha256=stored.sha256,
                flavour=metadata.get("flavour"), problem_type=metadata.get("problem_type"),
                target=metadata.get("target"), input_schema=metadata.get("input_schema", {}),
                metrics=metadata.get("metrics", {}), params={}, lineage=lineage,
            )
            s.add(version)
            s.flush()
            sections = {k: dict(v) for k, v in (champion_record.sections or {}).items()}
            s.add(t.ComplianceRecord(
                model_version_id=version.id, template=champion_record.template,
                sections=sections, re_review=dict(champion_record.re_review or {}),
                updated_by=self.principal.name,
            ))
            ref = format_ref(plan.model, number)
            self._event(
                s, "model.register", ref, artifact_sha256=stored.sha256,
                template=champion_record.template, datasets=[train_ref], author=requested_by,
                retrained_from=plan.champion, deployment=plan.deployment,
                compliance_from=plan.champion, sections=sorted(sections),
            )
            return views.ModelVersion.of(version)


def _check_columns(frame: Any, plan: ChampionSettings) -> None:
    missing = [c for c in (plan.target, *plan.features) if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"cannot retrain {plan.champion}: the labelled data lacks column(s) "
            f"{', '.join(missing)} (the target and the champion's inputs)"
        )
    if frame[plan.target].isna().all():
        raise InvalidInput(
            f"cannot retrain {plan.champion}: the labelled data has no {plan.target} values"
        )


def _preprocess_spec(plan: ChampionSettings) -> Any:
    if plan.backend != "sklearn" or not plan.preprocess:
        return None
    from ..ml.preprocess import PreprocessSpec

    spec = dict(plan.preprocess)
    if spec.get("clip_quantiles") is not None:
        spec["clip_quantiles"] = tuple(spec["clip_quantiles"])
    return PreprocessSpec(**spec)


def source_spec(source: Any) -> dict[str, Any]:
    """A labelled-data source as the retrain job stores it: ``{"uri", "table"?, "query"?,
    "format"?}``; a local path made absolute. InvalidInput for anything else, and for a source
    holding a credential (job parameters are stored in the clear and audited: give the database
    password through the driver's environment, e.g. ``PGPASSWORD``, or a ``.pgpass`` file)."""
    from ..ml.connectors import FORMATS, redact

    if isinstance(source, Path):
        source = str(source)
    if isinstance(source, str):
        source = {"uri": source}
    if not isinstance(source, dict):
        raise InvalidInput(
            "retrain job: source must be a path or URL, or a mapping with uri and table or query"
        )
    unknown = sorted(set(source) - {"uri", "table", "query", "format"})
    if unknown:
        raise InvalidInput(
            f"retrain job: unknown source key(s) {', '.join(unknown)}; it takes uri, table, "
            "query, format"
        )
    uri = source.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput("retrain job: the source needs a uri (a path, fsspec URL or SQL URL)")
    uri = uri.strip()
    if redact(uri) != uri:
        raise InvalidInput(
            f"retrain job: the source {redact(uri)} holds a credential; job parameters are "
            "stored and audited, so give it through the driver's environment (PGPASSWORD, "
            ".pgpass) instead"
        )
    clean: dict[str, Any] = {}
    for key in ("table", "query", "format"):
        value = source.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"retrain job: source {key} must be non-empty text")
        clean[key] = value.strip()
    if "table" in clean and "query" in clean:
        raise InvalidInput("retrain job: give the source a table or a query, not both")
    if clean.get("format") is not None and clean["format"] not in FORMATS:
        raise InvalidInput(f"retrain job: unknown source format {clean['format']!r}; use "
                           f"{' or '.join(FORMATS)}")
    if "://" not in uri:
        path = Path(uri).expanduser().resolve()
        if not path.is_file():
            raise InvalidInput(f"retrain job: no labelled-data file at {path}")
        uri = str(path)
    return {"uri": uri, **clean}


def check_time_limit(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        1 <= value <= MAX_TIME_LIMIT
    ):
        raise InvalidInput(
            f"retrain job: time_limit must be a number of seconds from 1 to {MAX_TIME_LIMIT:g}, "
            f"got {value!r}"
        )
    return float(value)
