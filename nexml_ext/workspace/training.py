"""Use cases for training: AutoML on a registered dataset version, recorded as a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..governance import compliance as policy
from ..governance.naming import parse_ref
from ..store import tables as t
from .core import WorkspaceCore

if TYPE_CHECKING:
    from ..ml.automl import TrainingRun
    from ..ml.preprocess import PreprocessSpec

#: Columns treated as protected attributes even when no template names them: keeping them out
#: of a model's inputs is the safe default, and using one needs a written justification.
DEFAULT_PROTECTED = (
    "sex", "gender", "age", "race", "ethnicity", "religion", "national_origin",
    "marital_status", "disability",
)


def protected_columns(lineage: dict[str, Any] | None, template: str | None) -> list[str]:
    """Columns to treat as protected for a version: those its training run kept out, its
    template's, and the common names above (fairness tests and reason codes use this)."""
    training = (lineage or {}).get("training") or {}
    named = list(training.get("protected") or [])
    named += list(policy.template(template).protected_attributes) if template else []
    return list(dict.fromkeys(named + list(DEFAULT_PROTECTED)))


class TrainingMixin(WorkspaceCore):
    def train(
        self,
        dataset: str,
        target: str | None,
        *,
        problem_type: str = "auto",
        time_limit: float = 60,
        metric: str | None = None,
        backend: str = "sklearn",
        template: str | None = None,
        protected: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        allow_protected_inputs: Sequence[str] = (),
        justification: str | None = None,
        seed: int = 0,
        preprocess: PreprocessSpec | None = None,
        progress: bool = True,
    ) -> TrainingRun:
        """Run AutoML on dataset version ``dataset`` and record the run.

        Protected attributes (``protected``; default: the template's, plus common names such
        as sex and age found in the data) are kept out of the inputs unless listed in
        ``allow_protected_inputs`` with a written ``justification``, which registration then
        stores in the compliance record. Returns the TrainingRun; pass it to
        ``register_model`` to register its champion. Raises PermissionDenied, NotFound,
        InvalidInput.
        """
        from ..ml.automl import train as automl_train

        self._authorize("model.train", f"dataset {dataset}")
        parse_ref(dataset, "dataset")
        frame = self.load_dataset(dataset)  # type: ignore[attr-defined]
        if protected is None:
            named = policy.template(template).protected_attributes if template else ()
            protected = [c for c in frame.columns if c in set(named) | set(DEFAULT_PROTECTED)]
        unknown = [c for c in protected if c not in frame.columns]
        if unknown:
            raise InvalidInput(
                f"cannot train on {dataset}: protected attribute(s) {', '.join(unknown)} "
                "are not columns of the data"
            )
        run = automl_train(
            frame, target, problem_type=problem_type, time_limit=time_limit, metric=metric,
            backend=backend, protected=list(protected), exclude=list(exclude),
            allow_protected_inputs=list(allow_protected_inputs), justification=justification,
            seed=seed, preprocess=preprocess, progress=progress,
        )
        summary = run.lineage()
        with self._write() as s:
            job = t.Job(
                kind="training", status="succeeded", progress=1.0,
                message=f"{run.backend} champion {run.champion_name}",
                params={"dataset": dataset, "target": target, "backend": backend,
                        "problem_type": run.problem_type, "time_limit": time_limit,
                        "metric": run.metric, "seed": seed, "template": template},
                result=summary, created_by=self.principal.name, started_at=t.utcnow(),
                finished_at=t.utcnow(),
            )
            s.add(job)
            s.flush()
            self._event(
                s, "model.train", f"dataset:{dataset}", job=job.id, backend=run.backend,
                champion=run.champion_name, protected=list(run.protected),
                protected_inputs=summary.get("protected_inputs"),
            )
            run.registry = {"dataset": dataset, "job": job.id, "template": template}
        return run

    def _protected_inputs(self, run: TrainingRun) -> list[dict[str, Any]]:
        """The compliance-record entries for protected attributes a run uses as inputs."""
        used = run.lineage().get("protected_inputs") or {}
        return [
            {"attribute": a, "justification": used.get("justification") or "",
             "by": self.principal.name}
            for a in used.get("attributes") or []
        ]
