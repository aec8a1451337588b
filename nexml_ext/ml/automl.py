"""AutoML: search model families on a table and return a TrainingRun with its champion.

Two backends. ``sklearn``: successive halving (``HalvingRandomSearchCV``) over a linear model, a
random forest and histogram gradient boosting, each inside the declared preprocessing pipeline
(``preprocess.py``), cross-validated and seeded; the best family's best configuration, refit on
all training rows, is the champion. ``autogluon``: a ``TabularPredictor`` over LightGBM, XGBoost,
CatBoost, random forest, extra trees and a linear model plus a weighted ensemble, with no torch
models. Clustering (sklearn only): KMeans and GaussianMixture for k in 2..8, k by silhouette.

Protected attributes are never model inputs unless named in ``allow_protected_inputs`` with a
written justification; either way the choice is in ``TrainingRun.lineage()``.
"""

from __future__ import annotations

import html
import logging
import math
import numbers
import platform
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .data import check_frame, check_target, schema_of
from .evaluate import jsonable
from .preprocess import (
    PreprocessSpec,
    as_text,
    build_pipeline,
    build_preprocessor,
    column_kinds,
    describe_fitted,
)

PROBLEM_TYPES = ("auto", "binary", "multiclass", "regression", "clustering")
BACKENDS = ("sklearn", "autogluon")
AUTO_MULTICLASS_MAX = 10  # an integer target with 3..10 distinct values is multiclass
MIN_ROWS = 20
CV_FOLDS = 5
CANDIDATES_PER_FAMILY = 9
HALVING_FACTOR = 3
MIN_CLASS_PER_FOLD = 8  # expected rows of the rarest class per test fold in the first rung
CLUSTER_KS = tuple(range(2, 9))
SILHOUETTE_MAX_ROWS = 5000  # silhouette is quadratic in rows: score a seeded sample above this
AUTOGLUON_MODELS = ("GBM", "XGB", "CAT", "RF", "XT", "LR")
AUTOGLUON_PRESETS = "medium_quality"
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
    "binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse", "clustering": "silhouette",
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
        return jsonable({
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
        })

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
        data, target, problem_type, time_limit, metric, backend, protected, exclude,
        allow_protected_inputs, justification, seed, preprocess,
    )
    dropped = {target, *exclude} | (set(protected) - set(protected_inputs["attributes"]))
    features = [c for c in data.columns if c not in dropped]
    if not features:
        raise InvalidInput("no input columns are left after removing target, protected and "
                           "excluded columns")
    X = data[features]
    check_frame(X)
    kinds = column_kinds(X)
    X = X.assign(**{c: as_text(X[[c]]).ravel() for c, k in kinds.items() if k == "categorical"})
    y = data[target] if target is not None else None
    if len(X) < MIN_ROWS:
        raise InvalidInput(f"the data has {len(X)} rows; training needs at least {MIN_ROWS}")
    metric = metric or DEFAULT_METRIC[kind]
    if kind == "clustering":
        result = _cluster(X, spec, time_limit, seed, progress, started)
    elif backend == "autogluon":
        result = _fit_autogluon(X, y, target, kind, metric, time_limit, seed, progress)
    else:
        result = _fit_sklearn(X, y, kind, metric, spec, time_limit, seed, progress, started)
    leaderboard = (
        pd.DataFrame(result["rows"], columns=LEADERBOARD_COLUMNS)
        .sort_values("score_val", ascending=False, kind="stable", na_position="last")
        .reset_index(drop=True)
    )
    return TrainingRun(
        backend=backend, problem_type=kind, target=target, metric=metric, seed=int(seed),
        features=features, protected=list(protected), excluded=list(exclude),
        leaderboard=leaderboard, champion_name=result["champion_name"],
        champion=result["champion"], candidates=result["candidates"],
        preprocessing=result["preprocessing"], input_schema=schema_of(data[features]),
        classes=jsonable(result["classes"]), training_rows=len(X),
        duration_s=round(time.monotonic() - started, 3),
        libraries=_libraries(backend), protected_inputs=protected_inputs,
        time_limit=float(time_limit), search=result["search"],
    )


# ----------------------------------------------------------------------------- checks


def _check(data, target, problem_type, time_limit, metric, backend, protected, exclude,
           allow_protected_inputs, justification, seed, preprocess):
    if not isinstance(data, pd.DataFrame):
        raise InvalidInput(f"expected a DataFrame, got {type(data).__name__}")
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(
            f"unknown problem type {problem_type!r}; use one of: {', '.join(PROBLEM_TYPES)}"
        )
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not (
        math.isfinite(time_limit) and time_limit > 0
    ):
        raise InvalidInput(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if preprocess is not None and not isinstance(preprocess, PreprocessSpec):
        raise InvalidInput(f"preprocess must be a PreprocessSpec, got {type(preprocess).__name__}")
    if preprocess is not None and backend == "autogluon":
        raise InvalidInput("preprocess applies to the sklearn backend; AutoGluon prepares its "
                           "own features (recorded in the run's preprocessing)")
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
    for role, names in (("protected", protected), ("excluded", exclude),
                        ("allowed protected", allowed)):
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise InvalidInput(f"{role} column(s) {', '.join(map(repr, missing))} are not in "
                               "the data")
        if target is not None and target in names:
            raise InvalidInput(f"the target {target!r} cannot also be a {role} column")
    not_protected = [c for c in allowed if c not in protected]
    if not_protected:
        raise InvalidInput(f"allow_protected_inputs names {', '.join(map(repr, not_protected))}, "
                           "which are not protected columns")
    if allowed and not (justification and justification.strip()):
        raise InvalidInput("using protected attribute(s) "
                           f"{', '.join(map(repr, allowed))} as inputs needs a written "
                           "justification")
    if metric is not None:
        if kind == "clustering" and metric != "silhouette":
            raise InvalidInput(f"clustering is scored by silhouette, not {metric!r}")
        if kind != "clustering" and (metric not in METRICS or kind not in METRICS[metric][2]):
            usable = [m for m, (_, _, kinds) in METRICS.items() if kind in kinds]
            raise InvalidInput(f"metric {metric!r} does not suit {kind}; use one of: "
                               f"{', '.join(usable)}")
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


# ----------------------------------------------------------------------------- sklearn


def _families(kind: str, seed: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, estimator, search space) per model family, cheapest first."""
    from scipy.stats import loguniform, randint
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    forest = {
        "model__max_depth": [None, 4, 6, 8, 12],
        "model__min_samples_leaf": randint(1, 21),
        "model__max_features": ["sqrt", 0.3, 0.5, 1.0],
    }
    boosting = {
        "model__learning_rate": loguniform(0.02, 0.3),
        "model__max_leaf_nodes": [7, 15, 31],
        "model__min_samples_leaf": randint(5, 41),
        "model__l2_regularization": loguniform(1e-4, 10),
    }
    if kind == "regression":
        return [
            ("Ridge", Ridge(), {"model__alpha": loguniform(1e-3, 1e3)}),
            ("HistGradientBoosting", HistGradientBoostingRegressor(random_state=seed), boosting),
            ("RandomForest",
             RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1), forest),
        ]
    return [
        ("LogisticRegression", LogisticRegression(max_iter=2000),
         {"model__C": loguniform(1e-3, 1e2)}),
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=seed), boosting),
        ("RandomForest",
         RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1), forest),
    ]


def _fit_sklearn(X, y, kind, metric, spec, time_limit, seed, progress, started):
    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, KFold, StratifiedKFold
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    rows = len(X)
    if kind == "regression":
        folds = CV_FOLDS
        cv = KFold(folds, shuffle=True, random_state=seed)
        floor = folds * 2 * MIN_CLASS_PER_FOLD
    else:
        smallest = int(y.value_counts().min())
        if smallest < 2:
            raise InvalidInput(f"a class of target {y.name!r} has a single row; "
                               "cross-validation needs at least 2 per class")
        folds = min(CV_FOLDS, smallest)
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        floor = math.ceil(folds * MIN_CLASS_PER_FOLD * rows / smallest)
    # As many rungs as the candidates need and the floor allows; the last one uses every row.
    rungs = 1 + math.ceil(math.log(CANDIDATES_PER_FAMILY, HALVING_FACTOR))
    while rungs > 1 and rows // HALVING_FACTOR ** (rungs - 1) < floor:
        rungs -= 1
    min_resources = rows // HALVING_FACTOR ** (rungs - 1)
    scorer = METRICS[metric][0]
    board, candidates, families, skipped = [], {}, {}, []
    plan = _families(kind, seed)
    with tqdm(total=len(plan), desc="sklearn search", unit="family", disable=not progress,
              leave=False) as bar:
        for name, estimator, space in plan:
            if candidates and time.monotonic() - started > time_limit:
                skipped.append(name)
                bar.update(1)
                continue
            bar.set_postfix_str(name)
            search = HalvingRandomSearchCV(
                build_pipeline(spec, X, estimator, problem_type=kind), space,
                n_candidates=CANDIDATES_PER_FAMILY, factor=HALVING_FACTOR,
                resource="n_samples", min_resources=min_resources, cv=cv, scoring=scorer,
                refit=True, random_state=seed, n_jobs=1,
            )
            began = time.monotonic()
            # One BLAS/OpenMP thread per fit: on tables this size the threads mostly wait on
            # each other (and on anything else running), which is slower and less predictable.
            with warnings.catch_warnings(), threadpool_limits(1):
                # Expected while searching: small rungs, unconverged weak configurations.
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                warnings.filterwarnings("ignore", message=".*non-finite.*", category=UserWarning)
                search.fit(X, y)
            searched = time.monotonic() - began
            bar.update(1)
            if not np.isfinite(search.best_score_):
                families[name] = {"failed": "no configuration scored"}
                continue
            best = search.best_index_
            families[name] = {
                "best_params": _params_of(search.best_params_),
                "score_val": search.best_score_,
                "cv_std": search.cv_results_["std_test_score"][best],
                "configurations": len(search.cv_results_["params"]),
                "resources_per_rung": list(search.n_resources_),
                "search_time_s": round(searched, 3),
            }
            candidates[name] = search.best_estimator_
            board.append({
                "model": name,
                "score_val": float(search.best_score_),
                "fit_time_s": float(search.refit_time_),
                "predict_time_per_row_s": _predict_time(search.best_estimator_, X, kind),
            })
    if not board:
        raise InvalidInput("no model family could be fitted to this data")
    champion_name = max(board, key=lambda r: r["score_val"])["model"]
    champion = candidates[champion_name]
    return {
        "rows": board, "champion_name": champion_name, "champion": champion,
        "candidates": candidates, "preprocessing": describe_fitted(champion),
        "classes": list(champion.classes_) if kind != "regression" else [],
        "search": {
            "method": "HalvingRandomSearchCV", "cv": type(cv).__name__, "folds": folds,
            "shuffle": True, "candidates_per_family": CANDIDATES_PER_FAMILY,
            "factor": HALVING_FACTOR, "min_resources": min_resources,
            "scoring": scorer, "preprocess": spec.to_dict(), "families": families,
            "skipped_for_time": skipped,
        },
    }


def _params_of(params: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("model__"): v for k, v in params.items()}


def _predict_time(estimator: Any, X: pd.DataFrame, kind: str) -> float:
    """Seconds per row to score the training rows once (probabilities for classifiers)."""
    score = estimator.predict if kind in ("regression", "clustering") else estimator.predict_proba
    began = time.perf_counter()
    score(X)
    return (time.perf_counter() - began) / len(X)


# ----------------------------------------------------------------------------- clustering


def _cluster(X, spec, time_limit, seed, progress, started):
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    prepare = build_preprocessor(spec, X, problem_type="clustering").fit(X)
    Xt = prepare.transform(X)
    sample = min(len(Xt), SILHOUETTE_MAX_ROWS)
    algorithms = {
        "KMeans": lambda k: KMeans(n_clusters=k, n_init=10, random_state=seed),
        "GaussianMixture": lambda k: GaussianMixture(n_components=k, random_state=seed),
    }
    board, candidates, skipped = [], {}, []
    plan = [(algo, k) for algo in algorithms for k in CLUSTER_KS]
    with tqdm(total=len(plan), desc="clustering", unit="fit", disable=not progress,
              leave=False) as bar, threadpool_limits(1), warnings.catch_warnings():
        # One thread (see _fit_sklearn); an unconverged mixture is still scored, not refused.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for algo, k in plan:
            name = f"{algo}_k{k}"
            bar.update(1)
            if candidates and time.monotonic() - started > time_limit:
                skipped.append(name)
                continue
            began = time.perf_counter()
            model = algorithms[algo](k).fit(Xt)
            fitted = time.perf_counter() - began
            labels = model.predict(Xt)
            if len(set(labels)) < 2:
                score = float("nan")  # every row in one cluster: silhouette is undefined
            else:
                score = float(silhouette_score(
                    Xt, labels, sample_size=sample if sample < len(Xt) else None,
                    random_state=seed,
                ))
            pipeline = Pipeline([*prepare.steps, ("model", model)])  # shares fitted steps
            candidates[name] = pipeline
            board.append({"model": name, "score_val": score, "fit_time_s": fitted,
                          "predict_time_per_row_s": _predict_time(pipeline, X, "clustering"),
                          "algorithm": algo, "k": k})
    scored = [r for r in board if np.isfinite(r["score_val"])]
    if not scored:
        raise InvalidInput("no clustering separated the data into two or more clusters")
    best = max(scored, key=lambda r: r["score_val"])
    champion = candidates[best["model"]]
    return {
        "rows": [{c: r[c] for c in LEADERBOARD_COLUMNS} for r in board],
        "champion_name": best["model"], "champion": champion, "candidates": candidates,
        "preprocessing": describe_fitted(champion), "classes": [],
        "search": {
            "method": "silhouette", "algorithms": list(algorithms), "ks": list(CLUSTER_KS),
            "silhouette_rows": sample, "chosen_k": best["k"], "chosen_algorithm": best["algorithm"],
            "preprocess": spec.to_dict(), "skipped_for_time": skipped,
        },
    }


# ----------------------------------------------------------------------------- AutoGluon


class _NoTorchProbe(logging.Filter):
    """Drops AutoGluon's "Failed to import torch" message: this platform has no torch on
    purpose, and none of the models it asks AutoGluon for need it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torch" not in record.getMessage().lower()


_TORCH_FILTER = _NoTorchProbe()


def _fit_autogluon(X, y, target, kind, metric, time_limit, seed, progress):
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular.registry import ag_model_registry
    from tqdm.auto import tqdm

    probe = logging.getLogger("autogluon.common.utils.resource_utils")
    if _TORCH_FILTER not in probe.filters:
        probe.addFilter(_TORCH_FILTER)
    # Each model family names its seed differently (LightGBM "seed", CatBoost "random_seed",
    # forests "random_state"); the registry knows which. The learner's random_state fixes the
    # train/validation split.
    hyperparameters = {
        key: {ag_model_registry.key_to_cls(key).seed_name: seed} for key in AUTOGLUON_MODELS
    }
    path = tempfile.mkdtemp(prefix="nexml-autogluon-")
    train_frame = X.assign(**{target: y.to_numpy()})
    try:
        predictor = TabularPredictor(
            label=target, problem_type=kind, eval_metric=METRICS[metric][1], path=path,
            verbosity=0, learner_kwargs={"random_state": seed},
        )
        with tqdm(desc="AutoGluon", unit="model", disable=not progress, leave=False) as bar, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library chatter; failures still raise
            predictor.fit(
                train_frame, time_limit=time_limit, presets=AUTOGLUON_PRESETS,
                hyperparameters=hyperparameters, fit_weighted_ensemble=True,
                callbacks=[_progress_callback(bar)],
            )
            board = predictor.leaderboard(silent=True)
            _, y_val = predictor.load_data_internal("val", return_X=False)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    # The predictor reads its models from ``path``; the folder goes when the predictor does.
    weakref.finalize(predictor, shutil.rmtree, path, True)
    validation_rows = max(len(y_val), 1)
    rows = [
        {"model": r.model, "score_val": float(r.score_val), "fit_time_s": float(r.fit_time),
         "predict_time_per_row_s": float(r.pred_time_val) / validation_rows}
        for r in board.itertuples()
    ]
    features_in = predictor.feature_metadata_in
    preprocessing = [{
        "step": "autogluon_features",
        "columns": list(predictor.original_features),
        "params": {
            "raw_types": dict(features_in.type_map_raw),
            "special_types": features_in.get_type_map_special(),
            "model_features": predictor.features(feature_stage="transformed"),
        },
    }]
    return {
        "rows": rows, "champion_name": predictor.model_best, "champion": predictor,
        "candidates": list(predictor.model_names()), "preprocessing": jsonable(preprocessing),
        "classes": list(predictor.class_labels) if kind != "regression" else [],
        "search": {
            "method": "TabularPredictor", "presets": AUTOGLUON_PRESETS,
            "hyperparameters": hyperparameters, "fit_weighted_ensemble": True,
            "eval_metric": METRICS[metric][1], "learner_random_state": seed,
            "validation_rows": len(y_val),
        },
    }


def _progress_callback(bar: Any = None) -> Any:
    """An AutoGluon callback that ticks ``bar`` once per fitted model.

    AutoGluon pickles its trainer, callbacks included, while fitting; the callback pickles as
    a call to this function, so it needs no importable class and never carries the bar along.
    """
    from autogluon.core.callbacks import AbstractCallback

    class Progress(AbstractCallback):
        def __reduce__(self) -> tuple[Any, tuple]:
            return _progress_callback, ()

        def _before_model_fit(self, trainer, model, **kwargs):
            if bar is not None:
                bar.set_postfix_str(model.name)
            return False, False

        def _after_model_fit(self, trainer, model_names, **kwargs):
            if bar is not None:
                bar.update(len(model_names))
            return False

    return Progress()


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
