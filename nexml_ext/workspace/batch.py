"""Use cases over data larger than memory: batch scoring and drift of a Parquet directory.

Both read the input in bounded chunks (``ml/batch.py``), in this process or on a Dask cluster
when a scheduler address is given, on the hash-verified model. Each run is recorded as a job
with its result and an audit event naming the version, the input's fingerprint (every file's
name, size and rows, and their SHA-256), the rows read and where the work ran.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidInput
from ..governance import compliance as policy
from ..ml.batch import DEFAULT_MEMORY, DriftRun, Progress, ScoreRun
from ..store import tables as t
from .core import WorkspaceCore


class BatchMixin(WorkspaceCore):
    def batch_score(
        self,
        ref: str,
        input_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        memory_limit: str | int = DEFAULT_MEMORY,
        dask: str | None = None,
        keep: list[str] | None = None,
        progress: Progress | None = None,
    ) -> ScoreRun:
        """Score every row of the Parquet files under ``input_dir`` with ``ref`` into
        ``output_dir`` (new or empty): one ``part-NNNNN.parquet`` per input file, in input
        order, with the ``keep`` columns, ``prediction`` and ``score`` (``proba_<class>`` for
        multiclass). ``memory_limit`` bounds the data in memory at once ("256MB"); ``dask`` is
        a scheduler address (``tcp://host:8786``) to run on. Needs ``model.analyse`` on the
        version (data scientists: their own). Rows are not recorded one by one: the run is.
        """
        from ..ml.batch import ArtifactPayload, score_files

        version = self._batch_version(ref)
        model = self._load_model(ref)  # type: ignore[attr-defined]
        payload = ArtifactPayload.of(model.directory, version["sha256"]) if dask else None
        run = score_files(
            model,
            input_dir,
            output_dir,
            memory_limit=memory_limit,
            keep=keep,
            dask=dask,
            payload=payload,
            progress=progress,
        )
        self._record_batch(
            "batch_score",
            ref,
            version["sha256"],
            run.input,
            {
                "rows": run.rows,
                "chunks": run.chunks,
                "chunk_rows": run.chunk_rows,
                "output": os.path.abspath(output_dir),
                "outputs": run.outputs,
                "executor": run.executor,
                "memory_limit": str(memory_limit),
            },
        )
        return run

    def batch_drift(
        self,
        ref: str,
        input_dir: str | os.PathLike[str],
        *,
        memory_limit: str | int = DEFAULT_MEMORY,
        dask: str | None = None,
        method: str = "auto",
        progress: Progress | None = None,
    ) -> DriftRun:
        """Drift of the Parquet files under ``input_dir`` against ``ref``'s training profile,
        over the model's input columns with its template's PSI thresholds: the same numbers
        ``drift`` gives on the same rows in memory, computed in bounded chunks, here or on the
        Dask cluster at ``dask``. ``method`` as in ``ml.drift`` (auto, test, distance).
        Needs ``model.analyse`` on the version (data scientists: their own)."""
        from ..ml.artifact_metadata import schema_columns
        from ..ml.batch import drift_files

        version = self._batch_version(ref)
        baseline = version["baseline"]
        if not baseline:
            raise InvalidInput(f"cannot check drift of {ref}: it has no training-data profile")
        profiled = baseline.get("columns", {})
        columns = [c for c in schema_columns(version["input_schema"]) if c in profiled]
        thresholds = version["thresholds"]
        run = drift_files(
            baseline,
            input_dir,
            columns=columns,
            memory_limit=memory_limit,
            dask=dask,
            progress=progress,
            method=method,
            psi_warn=float(thresholds.get("psi_warning", 0.10)),
            psi_alert=float(thresholds.get("psi_alert", 0.25)),
        )
        report = run.report
        self._record_batch(
            "batch_drift",
            ref,
            version["sha256"],
            run.input,
            {
                "rows": run.rows,
                "chunks": run.chunks,
                "chunk_rows": run.chunk_rows,
                "passes": run.passes,
                "executor": run.executor,
                "memory_limit": str(memory_limit),
                "alerts": report.alerts,
                "drift_share": report.drift_share,
                "dataset_drift": report.dataset_drift,
            },
            result=run.to_dict(),
        )
        return run

    # --- helpers -----------------------------------------------------------------------------

    def _batch_version(self, ref: str) -> dict[str, Any]:
        with self._read() as s:
            row = self._version_row(s, ref)
            template = row.model.template
            version = {
                "author": row.author,
                "sha256": row.artifact_sha256,
                "input_schema": dict(row.input_schema or {}),
                "baseline": self._baseline_profile(s, row),  # type: ignore[attr-defined]
                "template": template,
            }
        self._authorize("model.analyse", ref, owner=version["author"])
        chosen = policy.template(template) if template else None
        version["thresholds"] = dict(chosen.thresholds) if chosen else {}
        return version

    def _record_batch(
        self,
        kind: str,
        ref: str,
        sha256: str,
        source: dict[str, Any],
        summary: dict[str, Any],
        *,
        result: dict[str, Any] | None = None,
    ) -> None:
        """One job row (the run's parameters and result) and one audit event per run."""
        fingerprint = {k: v for k, v in source.items() if k != "listing"}
        with self._write() as s:
            job = t.Job(
                kind=kind,
                status="succeeded",
                progress=1.0,
                params={"ref": ref, "input": source},
                result=result if result is not None else summary,
                created_by=self.principal.name,
                started_at=t.utcnow(),
                finished_at=t.utcnow(),
            )
            s.add(job)
            s.flush()
            self._event(
                s,
                f"model.{kind}",
                ref,
                job=job.id,
                artifact_sha256=sha256,
                input=fingerprint,
                **summary,
            )
