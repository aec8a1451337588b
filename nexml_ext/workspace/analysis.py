"""Use cases that analyse a registered version on data: explanations, fairness, drift.

Each runs on the hash-verified model and is recorded as a job with its result and an audit
event, so what a reviewer was shown can be found again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..governance import compliance as policy
from ..store import tables as t
from .core import WorkspaceCore

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Explanation:
    """Per-row contributions (input-feature space), scores, decisions and reason codes."""

    ref: str
    values: pd.DataFrame
    base_values: Any
    scores: Any
    approved: Any
    cutoff: float
    reasons: list[list[Any]]
    method: str

    def to_dict(self, row: int = 0) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "score": float(self.scores[row]),
            "approved": bool(self.approved[row]),
            "cutoff": self.cutoff,
            "contributions": {k: float(v) for k, v in self.values.iloc[row].items()},
            "base_value": float(self.base_values[row]),
            "reasons": [
                {"feature": r.feature, "reason": r.reason, "contribution": float(r.contribution)}
                for r in self.reasons[row]
            ],
            "method": self.method,
        }


class AnalysisMixin(WorkspaceCore):
    def explain(
        self,
        ref: str,
        data: pd.DataFrame | str,
        *,
        reference: str | None = None,
        max_reasons: int = 4,
    ) -> Explanation:
        """Explain ``ref``'s scores for the rows of ``data`` (a DataFrame or dataset ref).

        Contributions are SHAP values in the original feature space. Rows scored below the
        cutoff get up to ``max_reasons`` adverse-action reasons, measured against applicants at
        or just above the cutoff in ``reference`` (default: the training data), mapped through
        the model's reason-code table, never naming a protected attribute.
        """
        from ..ml.explain import explain_local, reason_baseline, reason_codes
        from ..ml.validation import cutoff_of

        frame, version, model = self._analysis_inputs(ref, data)
        if model.problem_type != "binary":
            raise InvalidInput(f"cannot explain {ref}: reason codes need a binary model")
        cutoff = cutoff_of(model)
        if reference is None:
            # The training data's background and cutoff baseline, cached per artifact and cutoff
            # (the same reference the gateway uses for its decisions).
            background, baseline = self._reason_reference(model, version, cutoff)  # type: ignore[attr-defined]
        else:
            background = self.load_dataset(reference)  # type: ignore[attr-defined]
            baseline = reason_baseline(model, background, cutoff)
        local = explain_local(model, frame, background=background)
        reasons = reason_codes(
            model,
            frame,
            baseline=baseline,
            cutoff=cutoff,
            protected=self._protected_of(version),
            max_reasons=max_reasons,
            explanation=local,  # the contributions just computed, not a second SHAP pass
        )
        scores = model.score(frame)
        result = Explanation(
            ref,
            local.values,
            local.base_values,
            scores,
            scores >= cutoff,
            cutoff,
            reasons,
            local.method,
        )
        self._record_analysis(
            "explain",
            ref,
            data,
            {
                "rows": len(frame),
                "denied": int((~result.approved).sum()),
                "cutoff": cutoff,
                "method": local.method,
                "reasons": [[r.feature for r in row] for row in reasons],
            },
        )
        return result

    def fairness(self, ref: str, dataset: str) -> Any:
        """Fairness of ``ref``'s decisions on a labelled dataset version, per protected group."""
        from ..ml.validation import fairness_of

        frame, version, model = self._analysis_inputs(ref, dataset)
        template = self._template_of(version)
        report = fairness_of(
            model, frame, self._protected_of(version), dict(template.thresholds) if template else {}
        )
        if report is None:
            raise InvalidInput(f"cannot test fairness of {ref}: {dataset} has no protected columns")
        self._record_analysis("fairness", ref, dataset, report.to_dict())
        return report

    def drift(self, ref: str, dataset: str | pd.DataFrame) -> Any:
        """Drift of ``dataset`` against the training data's stored profile (no raw data needed)."""
        from ..ml.validation import drift_of

        frame, version, model = self._analysis_inputs(ref, dataset)
        with self._read() as s:
            baseline = self._baseline_profile(s, self._version_row(s, ref))  # type: ignore[attr-defined]
        if not baseline:
            raise InvalidInput(f"cannot check drift of {ref}: it has no training-data profile")
        template = self._template_of(version)
        report = drift_of(model, frame, baseline, dict(template.thresholds) if template else {})
        self._record_analysis("drift", ref, dataset, report.to_dict())
        return report

    # --- helpers -----------------------------------------------------------------------------

    def _analysis_inputs(self, ref: str, data):  # type: ignore[no-untyped-def]
        import pandas as pd

        with self._read() as s:
            row = self._version_row(s, ref)
            version = {
                "author": row.author,
                "lineage": row.lineage,
                "template": row.model.template,
                "artifact_sha256": row.artifact_sha256,
                "ref": ref,
            }
        self._authorize("model.analyse", ref, owner=version["author"])
        frame = data if isinstance(data, pd.DataFrame) else self.load_dataset(data)  # type: ignore[attr-defined]
        if frame.empty:
            raise InvalidInput(f"cannot analyse {ref}: the data has no rows")
        return frame, version, self._load_model(ref)  # type: ignore[attr-defined]

    def _template_of(self, version: dict[str, Any]) -> policy.Template | None:
        return policy.template(version["template"]) if version["template"] else None

    def _protected_of(self, version: dict[str, Any]) -> list[str]:
        from .training import protected_columns

        return protected_columns(version["lineage"], version["template"])

    def _record_analysis(self, kind: str, ref: str, data: Any, result: dict[str, Any]) -> None:
        source = data if isinstance(data, str) else "dataframe"
        with self._write() as s:
            job = t.Job(
                kind=kind,
                status="succeeded",
                progress=1.0,
                params={"ref": ref, "data": source},
                result=result,
                created_by=self.principal.name,
                started_at=t.utcnow(),
                finished_at=t.utcnow(),
            )
            s.add(job)
            s.flush()
            self._event(s, f"model.{kind}", ref, job=job.id, data=source)
