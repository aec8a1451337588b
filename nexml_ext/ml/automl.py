"""AutoML: search model families on a table and return a TrainingRun with its champion.

Two backends. ``sklearn``: successive halving (``HalvingRandomSearchCV``) over a linear model, a
random forest and histogram gradient boosting, each inside the declared preprocessing pipeline
(``preprocess.py``), cross-validated and seeded; the best family's best configuration, refit on
all training rows, is the champion. ``autogluon``: a ``TabularPredictor`` over LightGBM, XGBoost,
CatBoost, random forest, extra trees and a linear model plus a weighted ensemble, with no torch
models. Clustering (sklearn only): KMeans and GaussianMixture for k in 2..8, k by silhouette.

The backends live in ``automl_sklearn.py``, ``automl_autogluon.py`` and ``automl_clustering.py``;
this module checks the request, dispatches and records the run.

Protected attributes are never model inputs unless named in ``allow_protected_inputs`` with a
written justification; either way the choice is in ``TrainingRun.lineage()``.
"""

from __future__ import annotations

import html
import math
import numbers
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .automl_autogluon import AUTOGLUON_MODELS, AUTOGLUON_PRESETS, fit_autogluon
from .automl_clustering import CLUSTER_KS, SILHOUETTE_MAX_ROWS, cluster
from .automl_sklearn import (
    CANDIDATES_PER_FAMILY,
    CV_FOLDS,
    HALVING_FACTOR,
    MIN_CLASS_PER_FOLD,
    fit_sklearn,
)
from .data import check_frame, check_target, schema_of
from .json_values import jsonable
from .preprocess import PreprocessSpec, as_text, column_kinds

__all__ = [
    "AUTOGLUON_MODELS",
    "AUTOGLUON_PRESETS",
    "AUTO_MULTICLASS_MAX",
    "BACKENDS",
    "CANDIDATES_PER_FAMILY",
    "CLUSTER_KS",
    "CV_FOLDS",
    "DEFAULT_METRIC",
    "HALVING_FACTOR",
    "LEADERBOARD_COLUMNS",
    "METRICS",
    "MIN_CLASS_PER_FOLD",
    "MIN_ROWS",
    "PROBLEM_TYPES",
    "SILHOUETTE_MAX_ROWS",
    "TrainingRun",
    "infer_problem_type",
    "train",
]

PROBLEM_TYPES = ("auto", "binary", "multiclass", "regression", "clustering")
BACKENDS = ("sklearn", "autogluon")
AUTO_MULTICLASS_MAX = 10  # an integer target with 3..10 distinct values is multiclass
MIN_ROWS = 20
LEADERBOARD_COLUMNS = ["model", "score_val", "fit_time_s", "predict_time_per_row_s"]

# name → (scikit-learn scorer, AutoGluon eval_metric, problem types). Scores are "higher is
# better" on both backends: error metrics (log_loss, rmse, mae) are reported negated.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "roc_auc": ("roc_auc", "roc_auc", ("binary",)),
    "accuracy": ("accuracy", "accuracy", ("binary", "multiclass")),
    "balanced_accuracy": ("balanced_accuracy", "balanced_accuracy", ("binary", "multiclass")),
    "log_loss": ("neg_log_loss", "log_loss", ("binary", "multiclass")),
    "f1_macro": ("f1_macro", "f1_macro", ("multiclass",)),
    "rmse": ("neg_root_mean_squared_error", "root_mean_squared_error", ("regression",)),
    "mae": ("neg_mean_absolute_error", "mean_absolute_error", ("regression",)),
    "r2": ("r2", "r2", ("regression",)),
}
DEFAULT_METRIC = {
    "binary": "roc_auc",
    "multiclass": "log_loss",
    "regression": "rmse",
    "clustering": "silhouette",
}


@dataclass
class TrainingRun:
    """The outcome of ``train``: every candidate's validation score and the fitted champion.

    ``leaderboard`` has columns model, score_val (higher is better), fit_time_s and
    predict_time_per_row_s, best first. ``champion`` is a fitted scikit-learn Pipeline
    (sklearn backend, clustering) or the fitted ``TabularPredictor`` (autogluon), whose best
    model is ``champion_name``. ``candidates`` maps each sklearn candidate's name to its fitted
    pipeline; for autogluon it lists the predictor's model names.
    """

    backend: str
    problem_type: str
    target: str | None
    metric: str
    seed: int
    features: list[str]
    protected: list[str]
    excluded: list[str]
    leaderboard: pd.DataFrame = field(repr=False)
    champion_name: str
    champion: Any = field(repr=False)
    candidates: dict[str, Any] | list[str] = field(repr=False)
    preprocessing: list[dict[str, Any]] = field(repr=False)
    input_schema: dict[str, Any] = field(repr=False)
    classes: list[Any]
    training_rows: int
    duration_s: float
    libraries: dict[str, str] = field(repr=False)
    protected_inputs: dict[str, Any] = field(default_factory=dict)
    time_limit: float = 60.0
    search: dict[str, Any] = field(default_factory=dict, repr=False)
    registry: dict[str, Any] = field(default_factory=dict, repr=False)  # set by the Workspace

    def lineage(self) -> dict[str, Any]:
        """Everything about the run except fitted objects, as plain JSON."""
        return jsonable(
            {
                "backend": self.backend,
                "problem_type": self.problem_type,
                "target": self.target,
                "metric": self.metric,
                "seed": self.seed,
                "time_limit": self.time_limit,
                "features": self.features,
                "protected": self.protected,
                "excluded": self.excluded,
                "protected_inputs": self.protected_inputs,
                "leaderboard": self.leaderboard[LEADERBOARD_COLUMNS].to_dict(orient="records"),
                "champion_name": self.champion_name,
                "candidates": list(self.candidates),
                "preprocessing": self.preprocessing,
                "input_schema": self.input_schema,
                "classes": self.classes,
                "training_rows": self.training_rows,
                "duration_s": self.duration_s,
                "libraries": self.libraries,
                "search": self.search,
            }
        )

    def save(
        self,
        directory: str | Path,
        *,
        reason_codes: dict[str, str] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        """Write the champion as an artifact directory (``artifact.save_sklearn`` or
        ``save_autogluon``) with this run's lineage; returns the directory."""
        from . import artifact

        kwargs = {
            "problem_type": self.problem_type,
            "target": self.target,
            "input_schema": self.input_schema,
            "classes": self.classes,
            "metrics": metrics,
            "lineage": self.lineage(),
            "reason_codes": reason_codes,
        }
        if self.backend == "autogluon":
            return artifact.save_autogluon(self.champion, directory, **kwargs)
        return artifact.save_sklearn(self.champion, directory, **kwargs)

    def _repr_html_(self) -> str:
        title = (
            f"<b>{html.escape(self.backend)} {html.escape(self.problem_type)}</b> on "
            f"{self.training_rows} rows, {len(self.features)} inputs, metric "
            f"{html.escape(self.metric)}, seed {self.seed}, {self.duration_s:.1f} s; champion "
            f"<b>{html.escape(self.champion_name)}</b>"
        )
        table = self.leaderboard[LEADERBOARD_COLUMNS].to_html(
            index=False, float_format=lambda v: f"{v:.4g}", border=0
        )
        return f"<div>{title}{table}</div>"


def train(
    data: pd.DataFrame,
    target: str | None,
    *,
    problem_type: str = "auto",
    time_limit: float = 60,
    metric: str | None = None,
    backend: str = "sklearn",
    protected: Sequence[str] = (),
    exclude: Sequence[str] = (),
    allow_protected_inputs: Sequence[str] = (),
    justification: str | None = None,
    seed: int = 0,
    preprocess: PreprocessSpec | None = None,
    progress: bool = True,
) -> TrainingRun:
    """Search models for ``target`` in ``data`` and return the TrainingRun.

    ``problem_type="auto"`` infers: a text, categorical or boolean target is binary with two
    values and multiclass with more; a numeric target with two distinct values is binary, an
    integer-valued one with 3..10 distinct values multiclass, any other numeric one regression.
    Clustering needs ``target=None``. ``metric`` defaults to roc_auc (binary), log_loss
    (multiclass), rmse (regression), silhouette (clustering); scores are higher-is-better.

    Inputs are every column except the target, ``exclude`` and ``protected`` (protected ones are
    kept only if listed in ``allow_protected_inputs``, which needs a non-blank
    ``justification``). ``time_limit`` (seconds) bounds the search: AutoGluon enforces it
    itself; the sklearn backend starts no new model family (or clustering fit) once it has
    passed, so the run may overshoot by the family under way. ``seed`` fixes the folds, the
    search and the models: the same seed and data give the same scores on the sklearn backend.
    ``preprocess`` declares the sklearn pipeline's steps (default ``PreprocessSpec()``); the
    autogluon backend refuses it. ``progress`` shows a tqdm bar (notebook-aware). Raises
    InvalidInput naming the problem.
    """
    started = time.monotonic()
    kind, spec, protected_inputs = _check(
        data,
        target,
        problem_type,
        time_limit,
        metric,
        backend,
        protected,
        exclude,
        allow_protected_inputs,
        justification,
        seed,
        preprocess,
    )
    dropped = {target, *exclude} | (set(protected) - set(protected_inputs["attributes"]))
    features = [c for c in data.columns if c not in dropped]
    if not features:
        raise InvalidInput(
            "no input columns are left after removing target, protected and excluded columns"
        )
    X = data[features]
    check_frame(X)
    kinds = column_kinds(X)
    X = X.assign(**{c: as_text(X[[c]]).ravel() for c, k in kinds.items() if k == "categorical"})
    y = data[target] if target is not None else None
    if len(X) < MIN_ROWS:
        raise InvalidInput(f"the data has {len(X)} rows; training needs at least {MIN_ROWS}")
    metric = metric or DEFAULT_METRIC[kind]
    if kind == "clustering":
        result = cluster(X, spec, time_limit, seed, progress, started)
    elif backend == "autogluon":
        eval_metric = METRICS[metric][1]
        result = fit_autogluon(X, y, target, kind, eval_metric, time_limit, seed, progress)
    else:
        scorer = METRICS[metric][0]
        result = fit_sklearn(X, y, kind, scorer, spec, time_limit, seed, progress, started)
    leaderboard = (
        pd.DataFrame(result["rows"], columns=LEADERBOARD_COLUMNS)
        .sort_values("score_val", ascending=False, kind="stable", na_position="last")
        .reset_index(drop=True)
    )
    return TrainingRun(
        backend=backend,
        problem_type=kind,
        target=target,
        metric=metric,
        seed=int(seed),
        features=features,
        protected=list(protected),
        excluded=list(exclude),
        leaderboard=leaderboard,
        champion_name=result["champion_name"],
        champion=result["champion"],
        candidates=result["candidates"],
        preprocessing=result["preprocessing"],
        input_schema=schema_of(data[features]),
        classes=jsonable(result["classes"]),
        training_rows=len(X),
        duration_s=round(time.monotonic() - started, 3),
        libraries=_libraries(backend),
        protected_inputs=protected_inputs,
        time_limit=float(time_limit),
        search=result["search"],
    )


# ----------------------------------------------------------------------------- checks


def _check(
    data,
    target,
    problem_type,
    time_limit,
    metric,
    backend,
    protected,
    exclude,
    allow_protected_inputs,
    justification,
    seed,
    preprocess,
):
    if not isinstance(data, pd.DataFrame):
        raise InvalidInput(f"expected a DataFrame, got {type(data).__name__}")
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(
            f"unknown problem type {problem_type!r}; use one of: {', '.join(PROBLEM_TYPES)}"
        )
    if (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, numbers.Real)
        or not (math.isfinite(time_limit) and time_limit > 0)
    ):
        raise InvalidInput(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if preprocess is not None and not isinstance(preprocess, PreprocessSpec):
        raise InvalidInput(f"preprocess must be a PreprocessSpec, got {type(preprocess).__name__}")
    if preprocess is not None and backend == "autogluon":
        raise InvalidInput(
            "preprocess applies to the sklearn backend; AutoGluon prepares its "
            "own features (recorded in the run's preprocessing)"
        )
    if len(data) == 0 or data.shape[1] == 0:
        check_frame(data)  # names every problem: no rows, no columns
    if problem_type == "clustering" or (problem_type == "auto" and target is None):
        if target is not None:
            raise InvalidInput("clustering takes no target; pass target=None")
        if backend != "sklearn":
            raise InvalidInput("clustering runs on the sklearn backend only")
        kind = "clustering"
    else:
        if target is None:
            raise InvalidInput(f"problem type {problem_type!r} needs a target column")
        if target not in data.columns:
            raise InvalidInput(f"target column {target!r} is not in the data")
        kind = problem_type if problem_type != "auto" else infer_problem_type(data[target])
        check_target(data, target, kind)
    protected, exclude, allowed = list(protected), list(exclude), list(allow_protected_inputs)
    for role, names in (
        ("protected", protected),
        ("excluded", exclude),
        ("allowed protected", allowed),
    ):
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise InvalidInput(
                f"{role} column(s) {', '.join(map(repr, missing))} are not in the data"
            )
        if target is not None and target in names:
            raise InvalidInput(f"the target {target!r} cannot also be a {role} column")
    not_protected = [c for c in allowed if c not in protected]
    if not_protected:
        raise InvalidInput(
            f"allow_protected_inputs names {', '.join(map(repr, not_protected))}, "
            "which are not protected columns"
        )
    if allowed and not (justification and justification.strip()):
        raise InvalidInput(
            "using protected attribute(s) "
            f"{', '.join(map(repr, allowed))} as inputs needs a written "
            "justification"
        )
    if metric is not None:
        if kind == "clustering" and metric != "silhouette":
            raise InvalidInput(f"clustering is scored by silhouette, not {metric!r}")
        if kind != "clustering" and (metric not in METRICS or kind not in METRICS[metric][2]):
            usable = [m for m, (_, _, kinds) in METRICS.items() if kind in kinds]
            raise InvalidInput(
                f"metric {metric!r} does not suit {kind}; use one of: {', '.join(usable)}"
            )
    spec = preprocess or PreprocessSpec()
    if kind == "clustering" and spec.select_k is not None:
        raise InvalidInput("select_k needs a target; it cannot be used for clustering")
    protected_inputs = {
        "attributes": allowed,
        "justification": justification.strip() if allowed and justification else None,
    }
    return kind, spec, protected_inputs


def infer_problem_type(y: pd.Series) -> str:
    """binary, multiclass or regression for target ``y`` (the rule is in ``train``'s doc)."""
    values = y.dropna()
    distinct = values.nunique()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "binary" if distinct <= 2 else "multiclass"
    if distinct <= 2:
        return "binary"
    numbers = values.to_numpy(dtype=float)
    if distinct <= AUTO_MULTICLASS_MAX and np.all(numbers == np.round(numbers)):
        return "multiclass"
    return "regression"


def _libraries(backend: str) -> dict[str, str]:
    names = ["numpy", "pandas", "scikit-learn", "scipy"]
    if backend == "autogluon":
        names += ["autogluon.tabular", "lightgbm", "xgboost", "catboost"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
