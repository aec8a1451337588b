"""Model artifacts: a flavour's payload beside ``MODEL.json`` metadata, loaded to score.

Flavours. ``sklearn``: a fitted estimator or pipeline (``model.joblib``). ``autogluon``: a
``TabularPredictor`` cloned for deployment with only the served model (``predictor/``) and, when
that model is LightGBM or CatBoost, a fast path beside it (``fast/``, ``fast_path.py``): the
model's own booster in its library's native format behind AutoGluon's fitted feature transform
compiled into lookup tables, whose scores equal the full predictor's. ``save_autogluon`` checks
that on probe rows and serves the full predictor if they differ.

The store writes every file's SHA-256 into ``MODEL.json`` (``ArtifactStore.put_directory``) and
verifies them on ``fetch``. ``load`` must only be given a directory the store verified; it
re-checks the files against that table, when present, before anything is unpickled
(``artifact_metadata.py``). ``load_verified`` does both. Heavy libraries are imported where they
are used, so importing this module (the registry, the CLI) stays cheap and serving the fast path
never imports AutoGluon.
"""

from __future__ import annotations

import shutil
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from .artifact_metadata import (
    FLAVOURS,
    PROBLEM_TYPES,
    check_files,
    check_flavour,
    plain,
    read_metadata,
    schema_columns,
    write_metadata,
)
from .fast_path import (
    FAST_DIR,
    FAST_ENCODER,
    PARITY_TOLERANCE,
    NativeScorer,
    probe_frame,
    write_fast_path,
)
from .served_model import choose_model

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..store.artifacts import ArtifactStore
    from .model_view import TreeView

__all__ = [
    "AUTOGLUON_PREDICTOR",
    "FAST_DIR",
    "FAST_ENCODER",
    "FLAVOURS",
    "PARITY_TOLERANCE",
    "PROBLEM_TYPES",
    "SKLEARN_PAYLOAD",
    "LoadedModel",
    "load",
    "load_verified",
    "read_metadata",
    "save_autogluon",
    "save_sklearn",
]

SKLEARN_PAYLOAD = "model.joblib"
AUTOGLUON_PREDICTOR = "predictor"


# ---- saving --------------------------------------------------------------------------------------


def save_sklearn(
    estimator: Any,
    directory: str | Path,
    *,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    reason_codes: dict[str, str] | None = None,
) -> Path:
    """Write a fitted scikit-learn estimator or pipeline as an artifact directory.

    ``input_schema`` is ``ml.data.schema_of`` of the input columns (never the target);
    ``classes`` defaults to ``estimator.classes_``. Returns the directory. Raises InvalidInput
    for an unknown problem type, a bad schema or metadata that is not JSON.
    """
    import joblib

    if classes is None and problem_type != "regression":
        classes = list(getattr(estimator, "classes_", []))
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, path / SKLEARN_PAYLOAD)
    packages = ["scikit-learn", "joblib", *_estimator_packages(estimator)]
    fast_path = {
        "kind": "sklearn",
        "model": type(estimator).__name__,
        "description": "the fitted estimator itself; nothing is skipped",
    }
    write_metadata(
        path,
        "sklearn",
        problem_type,
        target,
        input_schema,
        classes,
        metrics,
        lineage,
        reason_codes,
        packages,
        fast_path,
    )
    return path


def save_autogluon(
    predictor: Any,
    directory: str | Path,
    *,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    reason_codes: dict[str, str] | None = None,
    model: str | None = None,
    latency_budget_ms: float | None = 5.0,
) -> Path:
    """Write a fitted AutoGluon ``TabularPredictor`` as an artifact directory.

    The served model is ``model`` if given; otherwise the first of the predictor's best model,
    then its single (non-ensemble) models by validation score, whose single-row serving time
    (schema validation included, timed here on rows drawn from the schema) fits
    ``latency_budget_ms``; ``None`` serves the best model whatever it costs. If none fits, the
    best model is served and the metadata says so. The predictor is cloned for deployment with
    only the served model, so the artifact holds exactly what is validated and served;
    ``MODEL.json["fast_path"]`` records the choice, every candidate's validation score and time,
    and the fast path's parity check against the clone.

    Raises InvalidInput if ``directory/predictor`` exists, the problem type, target or classes
    are not the predictor's, or the schema lacks an input column the predictor uses.
    """
    path = Path(directory)
    if problem_type != predictor.problem_type:
        raise InvalidInput(
            f"problem_type {problem_type!r} but the predictor is {predictor.problem_type!r}"
        )
    if target != predictor.label:
        raise InvalidInput(f"target {target!r} but the predictor predicts {predictor.label!r}")
    columns = schema_columns(input_schema)
    features = list(predictor.original_features)
    missing = [c for c in features if c not in columns]
    if missing:
        raise InvalidInput(f"input_schema lacks columns the predictor uses: {', '.join(missing)}")
    ag_classes = [] if problem_type == "regression" else [plain(c) for c in predictor.class_labels]
    classes = ag_classes if classes is None else [plain(c) for c in classes]
    if sorted(map(str, classes)) != sorted(map(str, ag_classes)):
        raise InvalidInput(f"classes {classes} are not the predictor's classes {ag_classes}")
    if (path / AUTOGLUON_PREDICTOR).exists():
        raise InvalidInput(f"{path / AUTOGLUON_PREDICTOR} already exists; give a new directory")

    probes = probe_frame(columns, features)
    name, candidates = choose_model(predictor, columns, probes, model, latency_budget_ms)
    clone = predictor.clone_for_deployment(
        str(path / AUTOGLUON_PREDICTOR), model=name, return_clone=True
    )
    fast_path = write_fast_path(clone, name, path, probes, columns, ag_classes)
    fast_path.update(
        model=name,
        autogluon_best=predictor.model_best,
        latency_budget_ms=latency_budget_ms,
        candidates=candidates,
        autogluon_classes=ag_classes,
        positive_class=plain(clone.positive_class) if problem_type == "binary" else None,
        decision_threshold=getattr(clone, "decision_threshold", None),
    )
    packages = [
        "autogluon.tabular",
        "autogluon.core",
        "autogluon.features",
        "lightgbm",
        "xgboost",
        "catboost",
        "scikit-learn",
    ]
    write_metadata(
        path,
        "autogluon",
        problem_type,
        target,
        input_schema,
        classes,
        metrics,
        lineage,
        reason_codes,
        packages,
        fast_path,
    )
    return path


def _estimator_packages(estimator: Any) -> list[str]:
    """Booster libraries whose classes appear in the estimator (LightGBM in a pipeline, ...)."""
    seen = {type(estimator).__module__.split(".")[0]}
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    seen.update(type(v).__module__.split(".")[0] for v in params.values() if hasattr(v, "fit"))
    return sorted(seen & {"lightgbm", "xgboost", "catboost", "imblearn"})


# ---- loading -------------------------------------------------------------------------------------


def load(verified_directory: str | Path, *, fast: bool = True) -> LoadedModel:
    """Load the artifact in a directory the ``ArtifactStore`` verified (``fetch``), to score.

    Loading unpickles, so the directory must come from ``ArtifactStore.fetch`` (or be one this
    process just saved). When ``MODEL.json`` lists the files' hashes (every stored artifact),
    each file is checked again first and a changed, missing or extra file is refused.
    ``fast=False`` serves the AutoGluon flavour through the full cloned predictor.

    Raises InvalidInput for a missing or unknown flavour, IntegrityError for a changed file.
    """
    directory = Path(verified_directory)
    metadata = read_metadata(directory)
    check_flavour(directory, metadata)
    check_files(directory, metadata)
    return LoadedModel(directory, metadata, fast=fast)


def load_verified(store: ArtifactStore, uri: str, sha256: str, *, fast: bool = True) -> LoadedModel:
    """Fetch ``uri`` from ``store``, verifying every file against ``sha256``, then load it.

    The fetched private copy lives as long as the returned model and is deleted after it.
    Raises NotFound, IntegrityError (before anything is unpickled), InvalidInput.
    """
    local = store.fetch(uri, sha256)
    try:
        metadata = read_metadata(local)
        check_flavour(local, metadata)
        model = LoadedModel(local, metadata, fast=fast)
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, str(local), True)
    return model


class LoadedModel:
    """A loaded artifact: schema validation, predictions, scores and explanations.

    Every scoring method runs ``validate`` first, so only the schema's columns reach the model;
    extra columns (ids, protected attributes) are dropped, never refused. The sklearn flavour
    scores batches of up to ``sklearn_compiled.MAX_ROWS`` rows through ``compiled`` (the pipeline
    read into plain structures at load, checked there to score probe rows exactly as it does),
    when it compiles; ``predict_proba_full`` always runs the pipeline itself.
    """

    def __init__(self, directory: Path, metadata: dict[str, Any], *, fast: bool = True) -> None:
        self.directory = Path(directory)
        self.metadata = metadata
        self.flavour: str = metadata["flavour"]
        self.problem_type: str = metadata.get("problem_type") or ""
        self.target: str = metadata.get("target") or ""
        self.classes: list[Any] = list(metadata.get("classes") or [])
        self.input_schema: dict[str, Any] = metadata.get("input_schema") or {}
        self.input_columns: list[str] = list(schema_columns(self.input_schema))
        self.reason_codes: dict[str, str] = dict(metadata.get("reason_codes") or {})
        self.fast_path: dict[str, Any] = dict(metadata.get("fast_path") or {})
        self._lock = threading.Lock()
        self._predictor: Any = None
        self._estimator: Any = None
        self._native: NativeScorer | None = None
        self.compiled: Any = None  # sklearn_compiled.CompiledPipeline: small batches, exact
        if self.flavour == "sklearn":
            import joblib

            from .sklearn_compiled import compile_model

            self._estimator = joblib.load(self.directory / SKLEARN_PAYLOAD)
            self.compiled = compile_model(self)
        elif fast and self.fast_path.get("kind") == "native":
            self._native = NativeScorer.read(self.directory, self.classes)
        else:
            self._full_predictor()

    def __repr__(self) -> str:
        served = "the native booster" if self._native is not None else f"the {self.flavour} model"
        return (
            f"LoadedModel({self.flavour} {self.problem_type}, target={self.target!r}, "
            f"served by {served})"
        )

    @property
    def classes_(self) -> np.ndarray:
        """The classes under scikit-learn's name, so metric code treats both alike."""
        import numpy as np

        return np.array(self.classes, dtype=object)

    @property
    def estimator(self) -> Any:
        """The scikit-learn estimator (sklearn flavour), else None."""
        return self._estimator

    def validate(self, X: Any) -> pd.DataFrame:
        """``X`` as the model's input: the schema's columns in schema order, training dtypes.

        ``X`` is a DataFrame, one row as a mapping, or a list of mappings. Columns the schema
        does not name (ids, protected attributes) are dropped, not refused. Raises one
        InvalidInput naming every bad field (``ml.data.coerce_to_schema``): missing columns,
        values of the wrong type, unseen categories, missing values where training had none.
        """
        import pandas as pd

        from .data import coerce_to_schema
        from .sklearn_compiled import conforming_rows

        if isinstance(X, dict):
            X = pd.DataFrame([X])
        elif isinstance(X, list) and all(isinstance(r, dict) for r in X):
            X = pd.DataFrame(X)
        clean = conforming_rows(X, self.input_schema)  # a small clean batch: nothing to coerce
        return clean if clean is not None else coerce_to_schema(X, self.input_schema)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (rows, classes), columns in ``self.classes`` order."""
        self._need_classes()
        rows = self.validate(X)
        if self._native is not None:
            return self._native.proba(rows)
        if self._estimator is not None:
            return self._sklearn_proba(rows)
        return self._full_proba(rows)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (classification) or values (regression)."""
        import numpy as np

        rows = self.validate(X)
        if self._estimator is not None:
            if self.problem_type == "regression" and self.compiled is not None:
                fast = self.compiled.score(rows)
                if fast is not None:
                    return fast[1]
            return np.asarray(self._estimator.predict(rows))
        if self.problem_type == "regression":
            if self._native is not None:
                return self._native.raw(rows).astype(float)
            served = self.fast_path["model"]
            return self._full_predictor().predict(rows, model=served).to_numpy(dtype=float)
        proba = self._native.proba(rows) if self._native is not None else self._full_proba(rows)
        if self.problem_type == "binary":  # AutoGluon's rule: positive above the threshold
            positive = self.fast_path["positive_class"]
            negative = next(c for c in self.classes if c != positive)
            threshold = self.fast_path.get("decision_threshold")
            threshold = 0.5 if threshold is None else threshold
            above = proba[:, self.classes.index(positive)] > threshold
            return np.asarray([positive if a else negative for a in above])
        return np.asarray([self.classes[i] for i in proba.argmax(axis=1)])

    def score(self, X: Any) -> np.ndarray:
        """Binary: the probability of ``classes[1]``; regression: the prediction."""
        if self.problem_type == "binary":
            return self.predict_proba(X)[:, 1]
        if self.problem_type == "regression":
            return self.predict(X).astype(float)
        raise InvalidInput(f"score is defined for binary and regression, not {self.problem_type}")

    def predict_proba_full(self, X: Any) -> np.ndarray:
        """The full cloned AutoGluon predictor's own probabilities: the fast path's reference.

        For the sklearn flavour this is ``predict_proba``.
        """
        self._need_classes()
        rows = self.validate(X)
        if self._estimator is not None:
            return self._sklearn_proba(rows, compiled=False)
        return self._full_proba(rows)

    def tree_view(self) -> TreeView | None:
        """The trees behind the scores, for TreeSHAP; None for other models.

        sklearn: ``ml.model_view.sklearn_tree_view``; autogluon: the fast path's own LightGBM or
        CatBoost booster (binary or regression) with its native contributions.
        """
        if self._estimator is not None:
            from .model_view import sklearn_tree_view

            return sklearn_tree_view(self._estimator, self.input_columns)
        native = self._native
        if native is None or self.problem_type == "multiclass":
            return None
        from .model_view import TreeView

        # the booster's margin is its positive class's; a TreeView's is classes[1]'s
        flip = self.problem_type == "binary" and self.classes[1] != self.fast_path["positive_class"]
        sign = -1.0 if flip else 1.0
        used = {column: j for j, column in enumerate(native.inputs)}
        return TreeView(
            encode=native.encode,
            model=native.model,
            groups={c: [used[c]] if c in used else [] for c in self.input_columns},
            output="log_odds" if self.problem_type == "binary" else "raw",
            contributions=lambda matrix: sign * native.contributions(matrix),
        )

    def explain(self, X: Any, **kw: Any) -> Any:
        """Local explanations of the rows of ``X``: ``ml.explain.explain_local(self, X, **kw)``."""
        from .explain import explain_local

        return explain_local(self, X, **kw)

    def _need_classes(self) -> None:
        if self.problem_type == "regression":
            raise InvalidInput("a regression model has no class probabilities; use predict")

    def _sklearn_proba(self, rows: pd.DataFrame, *, compiled: bool = True) -> np.ndarray:
        import numpy as np

        fast = self.compiled.score(rows) if compiled and self.compiled is not None else None
        if fast is not None:  # a small batch: the compiled path, equal to the pipeline's
            proba = fast[1]
        else:
            proba = np.asarray(self._estimator.predict_proba(rows), dtype=float)
        own = [plain(c) for c in getattr(self._estimator, "classes_", self.classes)]
        return proba if own == self.classes else proba[:, [own.index(c) for c in self.classes]]

    def _full_predictor(self) -> Any:
        with self._lock:
            if self._predictor is None:
                from autogluon.tabular import TabularPredictor

                predictor = TabularPredictor.load(
                    str(self.directory / AUTOGLUON_PREDICTOR), verbosity=0
                )
                predictor.persist(models=[self.fast_path["model"]])
                self._predictor = predictor
            return self._predictor

    def _full_proba(self, rows: pd.DataFrame) -> np.ndarray:
        served = self.fast_path["model"]
        proba = self._full_predictor().predict_proba(rows, model=served, as_multiclass=True)
        return proba[self.classes].to_numpy(dtype=float)
