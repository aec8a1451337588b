"""The sklearn AutoML backend: successive halving over model families in the declared pipeline.

``HalvingRandomSearchCV`` over a linear model, a random forest and histogram gradient boosting,
each inside the declared preprocessing pipeline (``preprocess.py``), cross-validated and seeded;
the best family's best configuration, refit on all training rows, is the champion.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput
from .preprocess import build_pipeline, describe_fitted

if TYPE_CHECKING:
    import pandas as pd

CV_FOLDS = 5
CANDIDATES_PER_FAMILY = 9
HALVING_FACTOR = 3
MIN_CLASS_PER_FOLD = 8  # expected rows of the rarest class per test fold in the first rung


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
            (
                "RandomForest",
                RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1),
                forest,
            ),
        ]
    return [
        (
            "LogisticRegression",
            LogisticRegression(max_iter=2000),
            {"model__C": loguniform(1e-3, 1e2)},
        ),
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=seed), boosting),
        (
            "RandomForest",
            RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
            forest,
        ),
    ]


def fit_sklearn(X, y, kind, scorer, spec, time_limit, seed, progress, started):
    """Search each model family for ``y`` on ``X``, scored by the scikit-learn ``scorer``.

    Returns ``train``'s result: leaderboard rows, champion (name and fitted pipeline),
    candidates, preprocessing, classes and the search record. Raises InvalidInput when a
    class has a single row or no family could be fitted.
    """
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
            raise InvalidInput(
                f"a class of target {y.name!r} has a single row; "
                "cross-validation needs at least 2 per class"
            )
        folds = min(CV_FOLDS, smallest)
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        floor = math.ceil(folds * MIN_CLASS_PER_FOLD * rows / smallest)
    # As many rungs as the candidates need and the floor allows; the last one uses every row.
    rungs = 1 + math.ceil(math.log(CANDIDATES_PER_FAMILY, HALVING_FACTOR))
    while rungs > 1 and rows // HALVING_FACTOR ** (rungs - 1) < floor:
        rungs -= 1
    min_resources = rows // HALVING_FACTOR ** (rungs - 1)
    board, candidates, families, skipped = [], {}, {}, []
    plan = _families(kind, seed)
    with tqdm(
        total=len(plan), desc="sklearn search", unit="family", disable=not progress, leave=False
    ) as bar:
        for name, estimator, space in plan:
            if candidates and time.monotonic() - started > time_limit:
                skipped.append(name)
                bar.update(1)
                continue
            bar.set_postfix_str(name)
            search = HalvingRandomSearchCV(
                build_pipeline(spec, X, estimator, problem_type=kind),
                space,
                n_candidates=CANDIDATES_PER_FAMILY,
                factor=HALVING_FACTOR,
                resource="n_samples",
                min_resources=min_resources,
                cv=cv,
                scoring=scorer,
                refit=True,
                random_state=seed,
                n_jobs=1,
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
            board.append(
                {
                    "model": name,
                    "score_val": float(search.best_score_),
                    "fit_time_s": float(search.refit_time_),
                    "predict_time_per_row_s": predict_time(search.best_estimator_, X, kind),
                }
            )
    if not board:
        raise InvalidInput("no model family could be fitted to this data")
    champion_name = max(board, key=lambda r: r["score_val"])["model"]
    champion = candidates[champion_name]
    return {
        "rows": board,
        "champion_name": champion_name,
        "champion": champion,
        "candidates": candidates,
        "preprocessing": describe_fitted(champion),
        "classes": list(champion.classes_) if kind != "regression" else [],
        "search": {
            "method": "HalvingRandomSearchCV",
            "cv": type(cv).__name__,
            "folds": folds,
            "shuffle": True,
            "candidates_per_family": CANDIDATES_PER_FAMILY,
            "factor": HALVING_FACTOR,
            "min_resources": min_resources,
            "scoring": scorer,
            "preprocess": spec.to_dict(),
            "families": families,
            "skipped_for_time": skipped,
        },
    }


def _params_of(params: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("model__"): v for k, v in params.items()}


def predict_time(estimator: Any, X: pd.DataFrame, kind: str) -> float:
    """Seconds per row to score the training rows once (probabilities for classifiers)."""
    score = estimator.predict if kind in ("regression", "clustering") else estimator.predict_proba
    began = time.perf_counter()
    score(X)
    return (time.perf_counter() - began) / len(X)
