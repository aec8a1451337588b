"""Use cases for models: register versions, list them, and record platform validations."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..errors import IntegrityError, InvalidInput, NotFound
from ..governance import compliance as policy
from ..governance.lifecycle import Status
from ..governance.naming import check_name, format_ref
from ..ml.artifact import read_metadata
from ..store import tables as t
from . import views
from .core import WorkspaceCore


class ModelsMixin(WorkspaceCore):
    def register_model(
        self,
        artifact_dir: str | Path,
        model: str,
        *,
        template: str | None = None,
        datasets: list[str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> views.ModelVersion:
        """Register an artifact directory as the next version of ``model``, in staging.

        The directory is copied into the artifact store with a ``MODEL.json`` manifest holding
        every file's SHA-256; the registry keeps the manifest's own hash. ``template`` names a
        compliance template (credit_scoring, fraud_detection, ...); ``datasets`` are the
        dataset-version refs the model learned from (its lineage).
        Raises PermissionDenied, InvalidInput, NotFound (unknown template or dataset).
        """
        self._authorize("model.register", f"model {model}")
        check_name("model", model)
        source = Path(artifact_dir)
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
                lineage={"datasets": lineage},
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
                details=details or {},
                run_by=self.principal.name,
                requested_by=requested_by,
            )
            s.add(row)
            s.flush()
            self._event(
                s,
                "validation.record",
                ref,
                validation=row.id,
                artifact_sha256=artifact_sha256,
                dataset=dataset,
                status=status,
                metrics=metrics,
            )
            return self._validation_view(s, ref, row)

    def validate(self, ref: str, *, dataset: str) -> views.Validation:
        """Have the platform validate ``ref`` on a dataset version (run here, in process).

        The platform fetches the artifact, verifies every file against the registered hash
        before unpickling, scores the dataset and records the metrics. Data scientists may ask
        for their own versions; managers for any.
        """
        with self._read() as s:
            version = self._version_row(s, ref)
            author, uri, sha = version.author, version.artifact_uri, version.artifact_sha256
            problem_type, target = version.problem_type, version.target
            template = s.get(t.Model, version.model_id).template
        self._authorize("validation.request", ref, owner=author)
        if not problem_type or not target:
            raise InvalidInput(
                f"cannot validate {ref}: its artifact declares no problem type/target"
            )
        from ..ml import artifact  # scikit-learn and scipy load only when a validation runs
        from ..ml.evaluate import evaluate

        frame = self.load_dataset(dataset)  # type: ignore[attr-defined]
        local = self._store.fetch(uri, sha)
        try:
            model = artifact.load(local)
            metrics = evaluate(model, frame, target, problem_type)
        finally:
            shutil.rmtree(local, ignore_errors=True)
        status = "passed"
        breaches = _threshold_breaches(metrics, policy.template(template) if template else None)
        if breaches:
            status = "failed"
        platform = self._as_platform()
        return platform.record_validation(  # type: ignore[attr-defined]
            ref,
            artifact_sha256=sha,
            metrics=metrics,
            dataset=dataset,
            status=status,
            details={"breaches": breaches},
            requested_by=self.principal.name,
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
        )

    def _dataset_lineage(self, s, ref: str) -> dict[str, Any]:
        try:
            row = self._dataset_version_row(s, ref)  # type: ignore[attr-defined]
        except NotFound as exc:
            raise NotFound(f"cannot register: lineage {exc}") from None
        return {"ref": ref, "sha256": row.content_sha256, "rows": row.row_count, "id": row.id}


_METRIC_ALIASES = {"auc": "roc_auc"}


def _threshold_breaches(metrics: dict[str, float], template: Any) -> list[str]:
    """Which of the template's ``<metric>_min`` thresholds the validation metrics miss."""
    if template is None:
        return []
    out = []
    for key, minimum in template.thresholds.items():
        if not key.endswith("_min"):
            continue
        metric = _METRIC_ALIASES.get(key[:-4], key[:-4])
        if metric in metrics and metrics[metric] < minimum:
            out.append(f"{metric} {metrics[metric]:.4f} is below the template minimum {minimum}")
    return out
