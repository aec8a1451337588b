"""What the explainers need to see inside a fitted model: its trees and how inputs become features.

A :class:`TreeView` exposes a tree ensemble that ``shap.TreeExplainer`` can read exactly, the
function that turns validated input rows into the ensemble's encoded feature matrix, and which
encoded columns each input column became (``groups``), so contributions computed on encoded
features can be summed back into the original, pre-encoding feature space.

``sklearn_tree_view`` builds one for the project's pipeline convention::

    Pipeline([("prepare", ColumnTransformer([...one transformer per input column, named after
              it...])), optionally ("select", <selector with get_support()>), ("model", <trees>)])

and returns None whenever the pipeline or the estimator falls outside what can be explained
exactly; callers then use the model-agnostic permutation explainer instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Estimators whose trees shap 0.51 reads exactly, by class name, with the space of their raw
# output for a binary classifier. Random forests average leaf class frequencies, so their trees
# add up to a probability rather than a log-odds margin.
_SKLEARN_TREES = {
    "HistGradientBoostingClassifier": "log_odds",
    "GradientBoostingClassifier": "log_odds",
    "RandomForestClassifier": "probability",
    "ExtraTreesClassifier": "probability",
    "HistGradientBoostingRegressor": "raw",
    "GradientBoostingRegressor": "raw",
    "RandomForestRegressor": "raw",
    "ExtraTreesRegressor": "raw",
}
# Losses and objectives whose raw output is the prediction itself (regression) or the log-odds
# of classes[1] (binary): sklearn, LightGBM and XGBoost spellings.
_IDENTITY_OR_LOGISTIC = {
    "log_loss", "squared_error", "absolute_error", "huber", "quantile",
    "binary", "regression", "regression_l1", "l2", "l1", "mse", "mae", "fair",
    "binary:logistic", "reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror",
    "reg:quantileerror",
}


@dataclass(frozen=True)
class TreeView:
    """A tree ensemble seen through its encoding.

    encode: validated input rows (DataFrame) -> the ensemble's dense encoded feature matrix.
    model: the object to hand to ``shap.TreeExplainer``.
    groups: input column -> indices of the encoded columns it became (may be empty).
    output: space of the trees' summed output: "log_odds" (boosted binary classifiers),
        "probability" (random-forest classifiers: probability of classes[1]) or "raw" (regression).
    contributions: optional native per-row contributions, encoded matrix -> (rows, encoded + 1)
        array in ``output`` space with the bias as the LAST column (LightGBM ``pred_contrib``).
    expected_value: the explainer's base value, when the view's author knows it.
    """

    encode: Callable[[pd.DataFrame], Any]
    model: Any
    groups: dict[str, list[int]]
    output: str
    contributions: Callable[[Any], np.ndarray] | None = None
    expected_value: float | None = None


def group_matrix(
    groups: dict[str, list[int]], n_encoded: int, input_columns: Sequence[str]
) -> np.ndarray:
    """(n_encoded, len(input_columns)) 0/1 matrix: encoded contributions @ matrix = per input.

    An encoded column that belongs to no input column (none should) contributes to none.
    """
    matrix = np.zeros((n_encoded, len(input_columns)))
    for j, column in enumerate(input_columns):
        matrix[groups.get(column, []), j] = 1.0
    return matrix


@dataclass(frozen=True)
class PipelineParts:
    """A fitted pipeline split the project's way: ``groups`` maps each input column to its
    encoded columns (after the selectors), ``estimator`` is the final step, ``encode`` turns
    validated rows into the estimator's dense input."""

    groups: dict[str, list[int]]
    estimator: Any
    encode: Callable[[pd.DataFrame], np.ndarray]


def pipeline_parts(pipeline: Any, input_columns: Sequence[str]) -> PipelineParts | None:
    """The parts of a pipeline following the project convention, or None.

    None unless ``pipeline`` is a Pipeline whose first step is a fitted ColumnTransformer with
    exactly one transformer per input column named after it (nothing passed through as
    remainder) and every middle step is a selector with ``get_support()``.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        return None
    prepare = pipeline.steps[0][1]
    if not isinstance(prepare, ColumnTransformer) or not hasattr(prepare, "output_indices_"):
        return None
    selectors = [step for _, step in pipeline.steps[1:-1]]
    if not all(hasattr(step, "get_support") for step in selectors):
        return None
    groups = _column_groups(prepare, input_columns)
    if groups is None:
        return None
    for selector in selectors:
        groups = _select(groups, np.asarray(selector.get_support(), dtype=bool))
    encoder = pipeline[:-1]

    def encode(frame: pd.DataFrame) -> np.ndarray:
        return _dense(encoder.transform(frame))

    return PipelineParts(groups, pipeline.steps[-1][1], encode)


def sklearn_tree_view(pipeline: Any, input_columns: Sequence[str]) -> TreeView | None:
    """A TreeView of a fitted pipeline following the project convention, or None.

    None when: ``pipeline`` is not a Pipeline whose first step is a fitted ColumnTransformer with
    exactly one transformer per input column named after it (and nothing passed through as
    remainder); a middle step is not a selector with ``get_support()``; the final estimator is
    not a tree ensemble shap reads exactly (HistGradientBoosting without native categorical
    splits, GradientBoosting, RandomForest, ExtraTrees, LightGBM or XGBoost sklearn wrappers), or
    is a classifier with more than two classes.
    """
    parts = pipeline_parts(pipeline, input_columns)
    if parts is None:
        return None
    classes = getattr(parts.estimator, "classes_", None)
    if classes is not None and len(classes) != 2:
        return None
    found = _tree_model(parts.estimator)
    if found is None:
        return None
    model, output, contributions = found
    return TreeView(encode=parts.encode, model=model, groups=parts.groups, output=output,
                    contributions=contributions)


def _column_groups(prepare: Any, input_columns: Sequence[str]) -> dict[str, list[int]] | None:
    """Encoded indices per input column, or None if the transformer breaks the convention."""
    wanted = set(input_columns)
    seen: set[str] = set()
    for name, _, columns in prepare.transformers_:
        if name == "remainder":
            continue
        selected = [columns] if isinstance(columns, str) else list(np.atleast_1d(columns))
        if name not in wanted or [str(c) for c in selected] != [name]:
            return None
        seen.add(name)
    indices = prepare.output_indices_
    remainder = indices.get("remainder", slice(0, 0))
    if seen != wanted or remainder.stop > remainder.start:
        return None
    return {column: list(range(indices[column].start, indices[column].stop))
            for column in input_columns}


def _select(groups: dict[str, list[int]], support: np.ndarray) -> dict[str, list[int]]:
    """Re-index groups after a selector kept only the ``support`` columns."""
    new_index = np.cumsum(support) - 1
    return {column: [int(new_index[i]) for i in kept if support[i]]
            for column, kept in groups.items()}


def _tree_model(estimator: Any) -> tuple[Any, str, Callable[[Any], np.ndarray] | None] | None:
    """(object for shap.TreeExplainer, output space, native contributions) or None.

    Only identity-link objectives (and the logistic link for binary classifiers) qualify, so
    the trees' summed output is the margin the platform reports.
    """
    module = type(estimator).__module__
    name = type(estimator).__name__
    is_classifier = hasattr(estimator, "classes_")
    if module.startswith("sklearn.ensemble") and name in _SKLEARN_TREES:
        categorical = getattr(estimator, "is_categorical_", None)
        if categorical is not None and np.any(categorical):
            return None  # shap misreads native categorical splits (verified with shap 0.51)
        loss = getattr(estimator, "loss", None)
        if isinstance(loss, str) and loss not in _IDENTITY_OR_LOGISTIC:
            return None
        return estimator, _SKLEARN_TREES[name], None
    if module.startswith("lightgbm"):
        booster = estimator.booster_
        if booster.params.get("objective", "") not in _IDENTITY_OR_LOGISTIC:
            return None

        def lightgbm_contributions(encoded: Any) -> np.ndarray:
            return np.asarray(booster.predict(encoded, pred_contrib=True), dtype=float)

        return booster, "log_odds" if is_classifier else "raw", lightgbm_contributions
    if module.startswith("xgboost"):
        import xgboost

        booster = estimator.get_booster()
        if str(estimator.get_params().get("objective")) not in _IDENTITY_OR_LOGISTIC:
            return None

        def xgboost_contributions(encoded: Any) -> np.ndarray:
            matrix = xgboost.DMatrix(encoded, feature_names=booster.feature_names)
            return np.asarray(booster.predict(matrix, pred_contribs=True), dtype=float)

        return estimator, "log_odds" if is_classifier else "raw", xgboost_contributions
    return None


def _dense(encoded: Any) -> np.ndarray:
    if hasattr(encoded, "toarray"):
        encoded = encoded.toarray()
    if isinstance(encoded, pd.DataFrame):
        encoded = encoded.to_numpy()
    return np.asarray(encoded, dtype=float)
