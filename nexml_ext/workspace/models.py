"""Use cases for models: register versions, list them, and record platform validations."""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import IntegrityError, InvalidInput, NotFound
from ..governance import compliance as policy
from ..governance.lifecycle import Status
from ..governance.naming import check_name, format_ref
from ..ml.artifact import read_metadata
from ..store import tables as t
from . import views
from .core import WorkspaceCore

if TYPE_CHECKING:
    from ..ml.artifact import LoadedModel
    from ..ml.automl import TrainingRun
    from ..ml.validation import ValidationResult

# Verified, loaded models by manifest hash, most recently used last (AutoGluon predictors take
# seconds to load); bounded so a long-lived notebook or server does not keep every version.
_LOADED: OrderedDict[str, LoadedModel] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ValidationRun:
    """One computed (not yet recorded) platform validation and everything it ran on."""

    ref: str
    dataset: str
    artifact_sha256: str
    template: str | None
    thresholds: dict[str, float]
    protected: tuple[str, ...]
    training: str | None  # the training dataset version (the drift baseline's data)
    input_schema: dict[str, Any]  # the artifact's input schema (training dtypes, ranges)
    baseline: dict[str, Any] | None  # the training data's profile
    model: Any  # the hash-verified LoadedModel
    data: Any  # the dataset version as a DataFrame
    result: ValidationResult

    @property
    def breaches(self) -> list[str]:
        return list(self.result.breaches)

    @property
    def status(self) -> str:
        return "failed" if self.result.breaches else "passed"

    @property
    def details(self) -> dict[str, Any]:
        """What a Validation row keeps: the result's details and the breaches."""
        return {**self.result.details, "breaches": list(self.result.breaches)}


class ModelsMixin(WorkspaceCore):
    def register_model(
        self,
        artifact: str | Path | TrainingRun,
        model: str,
        *,
        template: str | None = None,
        datasets: list[str] | None = None,
        params: dict[str, Any] | None = None,
        reason_codes: dict[str, str] | None = None,
    ) -> views.ModelVersion:
        """Register an artifact directory, or a TrainingRun's champion, as the next version.

        The directory is copied into the artifact store with a ``MODEL.json`` manifest holding
        every file's SHA-256; the registry keeps the manifest's own hash. ``template`` names a
        compliance template (credit_scoring, fraud_detection, ...); ``datasets`` are the
        dataset-version refs the model learned from (a TrainingRun from ``train`` brings its
        own, with its preprocessing, seed, leaderboard and any justified protected inputs).
        ``reason_codes`` maps input features to adverse-action reason statements.
        Raises PermissionDenied, InvalidInput, NotFound (unknown template or dataset).
        """
        self._authorize("model.register", f"model {model}")
        check_name("model", model)
        if not isinstance(artifact, str | Path):
            return self._register_run(
                artifact,
                model,
                template=template,
                datasets=datasets,
                params=params,
                reason_codes=reason_codes,
            )
        return self._register_directory(Path(artifact), model, template, datasets, params, {})

    def _register_directory(
        self,
        source: Path,
        model: str,
        template: str | None,
        datasets: list[str] | None,
        params: dict[str, Any] | None,
        extra_lineage: dict[str, Any],
    ) -> views.ModelVersion:
        if not source.is_dir():
            raise InvalidInput(f"cannot register {model}: {source} is not a directory")
        chosen = policy.template(template) if template else None
        metadata = read_metadata(source)
        with self._read() as s:
            lineage = [self._dataset_lineage(s, ref) for ref in datasets or []]
            existing = s.execute(select(t.Model).where(t.Model.name == model)).scalar_one_or_none()
            if chosen is None and existing is not None and existing.template:
                chosen = policy.template(existing.template)
        stored = self._store.put_directory(source, f"models/{model}/{uuid.uuid4().hex}")
        with self._write() as s:
            row = s.execute(select(t.Model).where(t.Model.name == model)).scalar_one_or_none()
            if row is None:
                row = t.Model(
                    name=model,
                    template=chosen.name if chosen else None,
                    created_by=self.principal.name,
                )
                s.add(row)
                s.flush()
            number = self._next_number(s, t.ModelVersion.version, t.ModelVersion.model_id == row.id)
            version = t.ModelVersion(
                model=row,
                version=number,
                status=Status.STAGING.value,
                author=self.principal.name,
                artifact_uri=stored.uri,
                artifact_sha256=stored.sha256,
                flavour=metadata.get("flavour"),
                problem_type=metadata.get("problem_type"),
                target=metadata.get("target"),
                input_schema=metadata.get("input_schema", {}),
                metrics=metadata.get("metrics", {}),
                params=params or {},
                lineage={"datasets": lineage, **extra_lineage},
            )
            s.add(version)
            s.flush()
            s.add(
                t.ComplianceRecord(
                    model_version_id=version.id,
                    template=chosen.name if chosen else None,
                    sections={},
                    re_review=dict(chosen.re_review) if chosen else {},
                    updated_by=self.principal.name,
                )
            )
            ref = format_ref(model, number)
            self._event(
                s,
                "model.register",
                ref,
                artifact_sha256=stored.sha256,
                template=chosen.name if chosen else None,
                datasets=[d["ref"] for d in lineage],
            )
            return views.ModelVersion.of(version)

    def models(self) -> list[views.ModelSummary]:
        """The model inventory: each model with its latest version and where it is deployed."""
        self._authorize("model.view")
        with self._read() as s:
            out = []
            for model in s.scalars(select(t.Model).order_by(t.Model.name)):
                versions = list(
                    s.scalars(
                        select(t.ModelVersion)
                        .where(t.ModelVersion.model_id == model.id)
                        .order_by(t.ModelVersion.version)
                    )
                )
                deployed = s.scalars(
                    select(t.Deployment.name).where(
                        t.Deployment.model_id == model.id, t.Deployment.status == "active"
                    )
                )
                latest = versions[-1]
                out.append(
                    views.ModelSummary(
                        model.name,
                        model.template,
                        len(versions),
                        latest.version,
                        latest.status,
                        tuple(deployed),
                    )
                )
            return out

    def versions(self, name: str) -> list[views.ModelVersion]:
        """Every version of model ``name``, oldest first."""
        self._authorize("model.view", name)
        with self._read() as s:
            model = self._model_row(s, name)
            rows = s.scalars(
                select(t.ModelVersion)
                .where(t.ModelVersion.model_id == model.id)
                .order_by(t.ModelVersion.version)
            )
            return [views.ModelVersion.of(r) for r in rows]

    def version(self, ref: str) -> views.ModelVersion:
        """One model version by ``NAME:VERSION``."""
        self._authorize("model.view", ref)
        with self._read() as s:
            return views.ModelVersion.of(self._version_row(s, ref))

    def validations(self, ref: str) -> list[views.Validation]:
        """The platform validations recorded for a version, oldest first."""
        self._authorize("model.view", ref)
        with self._read() as s:
            version = self._version_row(s, ref)
            rows = s.scalars(
                select(t.Validation)
                .where(t.Validation.model_version_id == version.id)
                .order_by(t.Validation.id)
            )
            return [self._validation_view(s, ref, r) for r in rows]

    def record_validation(
        self,
        ref: str,
        *,
        artifact_sha256: str,
        metrics: dict[str, float],
        dataset: str | None = None,
        status: str = "passed",
        details: dict[str, Any] | None = None,
        requested_by: str | None = None,
    ) -> views.Validation:
        """Record a platform-run validation of one exact artifact (the platform only).

        Raises PermissionDenied for anyone but the platform, IntegrityError if
        ``artifact_sha256`` is not the version's registered artifact.
        """
        self._authorize("validation.record", ref)
        if status not in {"passed", "failed"}:
            raise InvalidInput(f"validation status must be passed or failed, got {status!r}")
        with self._write() as s:
            return self._add_validation(
                s,
                ref,
                artifact_sha256=artifact_sha256,
                metrics=metrics,
                dataset=dataset,
                status=status,
                details=details or {},
                requested_by=requested_by,
                report_id=None,
            )

    def _add_validation(
        self,
        s,
        ref: str,
        *,
        artifact_sha256: str,
        metrics: dict[str, float],
        dataset: str | None,
        status: str,
        details: dict[str, Any],
        requested_by: str | None,
        report_id: int | None,
    ) -> views.Validation:
        """Write a validation row and its ``validation.record`` event in the caller's
        transaction (``record_validation``, or the finishing of a validation report)."""
        version = self._version_row(s, ref)
        if artifact_sha256 != version.artifact_sha256:
            raise IntegrityError(
                f"validation refused for {ref}: it ran on artifact {artifact_sha256[:12]}…, "
                f"the registered artifact is {version.artifact_sha256[:12]}…"
            )
        dataset_id = self._dataset_version_row(s, dataset).id if dataset else None
        row = t.Validation(
            model_version_id=version.id,
            artifact_sha256=artifact_sha256,
            dataset_version_id=dataset_id,
            status=status,
            metrics=metrics,
            details=details,
            run_by=self.principal.name,
            requested_by=requested_by,
            report_id=report_id,
        )
        s.add(row)
        s.flush()
        extra = {"report": report_id} if report_id is not None else {}
        self._event(
            s,
            "validation.record",
            ref,
            validation=row.id,
            artifact_sha256=artifact_sha256,
            dataset=dataset,
            status=status,
            metrics=metrics,
            **extra,
        )
        return self._validation_view(s, ref, row)

    def validation_run(self, ref: str, *, dataset: str) -> ValidationRun:
        """Compute, without recording, the platform's validation of ``ref`` on ``dataset``.

        Exactly what ``validate`` computes and records (same code, same seed): the validation
        report's run shows these numbers and the platform records them, linked to the report.
        Returns the loaded (hash-verified) model, the data, the training baseline and schema,
        the protected columns, the template's thresholds and the result.
        """
        with self._read() as s:
            author = self._version_row(s, ref).author
        self._authorize("model.analyse", ref, owner=author)
        return self._validation_run(ref, dataset)

    def _validation_run(self, ref: str, dataset: str) -> ValidationRun:
        from ..ml.validation import run_validation
        from .training import protected_columns

        with self._read() as s:
            version = self._version_row(s, ref)
            sha, input_schema = version.artifact_sha256, dict(version.input_schema or {})
            template = s.get(t.Model, version.model_id).template
            baseline = self._baseline_profile(s, version)
            protected = protected_columns(version.lineage, template)
            training = ((version.lineage or {}).get("datasets") or [{}])[0].get("ref")
        loaded = self._load_model(ref)
        frame = self.load_dataset(dataset)  # type: ignore[attr-defined]
        chosen = policy.template(template) if template else None
        thresholds = dict(chosen.thresholds) if chosen else {}
        result = run_validation(
            loaded,
            frame,
            baseline_profile=baseline,
            protected=protected,
            thresholds=thresholds,
        )
        return ValidationRun(
            ref, dataset, sha, template, thresholds, tuple(protected), training, input_schema,
            baseline, loaded, frame, result,
        )

    def validate(self, ref: str, *, dataset: str) -> views.Validation:
        """Have the platform validate ``ref`` on a dataset version (run here, in process).

        The platform fetches the artifact, verifies every file against the registered hash
        before unpickling, and records the evidence: performance with bootstrap intervals,
        fairness by protected attribute, drift against the training baseline, and which of the
        template's thresholds are breached (status ``failed``). Data scientists may ask for
        their own versions; managers for any.
        """
        return self._validate(ref, dataset, requested_by=None)

    def _validate(self, ref: str, dataset: str, *, requested_by: str | None) -> views.Validation:
        """``validate``'s work. ``requested_by`` given: the platform runs a validation job that
        person submitted (authorised at submission); None: the caller asks, authorised here."""
        with self._read() as s:
            author = self._version_row(s, ref).author
        if requested_by is None:
            self._authorize("validation.request", ref, owner=author)
        else:  # only the platform runs a validation on someone's behalf
            self._authorize("validation.record", ref)
        run = self._validation_run(ref, dataset)
        platform = self._as_platform()
        return platform.record_validation(  # type: ignore[attr-defined]
            ref,
            artifact_sha256=run.artifact_sha256,
            metrics=run.result.metrics,
            dataset=dataset,
            status=run.status,
            details=run.details,
            requested_by=requested_by or self.principal.name,
        )

    def _load_model(self, ref: str) -> LoadedModel:
        """The version's model, fetched and hash-verified before unpickling, then cached.

        The cache is keyed by the manifest hash, so a changed artifact is never served from it.
        """
        from ..ml.artifact import load_verified

        with self._read() as s:
            version = self._version_row(s, ref)
            uri, sha = version.artifact_uri, version.artifact_sha256
        with _CACHE_LOCK:
            cached = _LOADED.get(sha)
            if cached is not None:
                _LOADED.move_to_end(sha)
                return cached
        loaded = load_verified(self._store, uri, sha)
        with _CACHE_LOCK:
            _LOADED[sha] = loaded
            while len(_LOADED) > _CACHE_SIZE:
                _LOADED.popitem(last=False)
        return loaded

    def _baseline_profile(self, s, version: t.ModelVersion) -> dict[str, Any] | None:
        """The drift baseline: the profile of the first dataset version the model learned from."""
        datasets = (version.lineage or {}).get("datasets") or []
        if not datasets:
            return None
        row = s.get(t.DatasetVersion, datasets[0]["id"])
        return row.profile if row is not None and row.profile else None

    def _register_run(
        self, run: TrainingRun, model: str, *, template, datasets, params, reason_codes
    ) -> views.ModelVersion:
        registry = getattr(run, "registry", None) or {}
        if not datasets and not registry.get("dataset"):
            raise InvalidInput(
                f"cannot register {model}: the run was not trained through the Workspace; "
                "pass datasets=[...] with the dataset versions it learned from"
            )
        with tempfile.TemporaryDirectory(prefix="nexml-register-") as tmp:
            directory = run.save(Path(tmp) / "artifact", reason_codes=reason_codes)
            lineage = {
                "training": {"job": registry.get("job"), **run.lineage()},
                "protected_inputs": self._protected_inputs(run),
            }  # type: ignore[attr-defined]
            return self._register_directory(
                directory,
                model,
                template or registry.get("template"),
                datasets or [registry["dataset"]],
                params,
                lineage,
            )

    def _validation_view(self, s, ref: str, row: t.Validation) -> views.Validation:
        dataset = None
        if row.dataset_version_id is not None:
            dv = s.get(t.DatasetVersion, row.dataset_version_id)
            dataset = format_ref(dv.dataset.name, dv.version)
        return views.Validation(
            row.id,
            ref,
            row.artifact_sha256,
            dataset,
            row.status,
            row.metrics,
            row.run_by,
            row.requested_by,
            row.created_at,
            row.details,
            row.report_id,
        )

    def _dataset_lineage(self, s, ref: str) -> dict[str, Any]:
        try:
            row = self._dataset_version_row(s, ref)  # type: ignore[attr-defined]
        except NotFound as exc:
            raise NotFound(f"cannot register: lineage {exc}") from None
        return {"ref": ref, "sha256": row.content_sha256, "rows": row.row_count, "id": row.id}
