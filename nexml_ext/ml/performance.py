"""Performance of a deployed model from the outcomes that arrived later (monitoring).

Pure: arrays, Series or DataFrames in, plain JSON-able dicts out; no database, no principal.
The monitors of a deployment call these on the predictions of one window joined to their
outcomes, and compare the numbers with thresholds.

Classification (binary outcomes; ``scores`` are probabilities of the positive label):

- ``auc``: area under the ROC curve, the Mann-Whitney statistic with ties counted half
  (equals ``sklearn.metrics.roc_auc_score``); ``None`` when the outcomes hold a single class;
- a row is predicted positive when its score is ``>= threshold`` (or from ``y_pred`` when given);
  ``accuracy``, ``precision`` = TP/(TP+FP), ``recall`` = TP/(TP+FN),
  ``f1`` = 2TP/(2TP+FP+FN), each ``None`` when its denominator is 0;
- ``brier``: mean of (score - outcome)²;
- ``calibration``: reliability bins, the same bins as ``sklearn.calibration.calibration_curve``
  (``uniform``: ``n_bins`` equal-width bins on [0, 1]; ``quantile``: equal-count bins; a score on
  an inner edge falls in the lower bin; empty bins are left out), each with its count, mean
  predicted score and observed positive rate; ``ece`` (expected calibration error) is the
  count-weighted mean of |observed rate - mean predicted| over the bins.

Regression: ``mae``, ``rmse``, ``r2`` (``None`` with fewer than 2 rows or constant outcomes) and
``bias`` (mean of prediction - outcome).

Both accept ``segments`` (columns whose categories, or numeric bins, split the rows) and
``protected`` (protected attributes; numeric ones with many values are cut into the fairness
report's age bands). Every undefined number is ``None`` and ``notes`` says why in words.
Refusals are ``InvalidInput`` naming what was refused: no rows, lengths that differ, missing
outcomes, more than two labels, scores outside [0, 1], an unknown ``positive_label``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import InvalidInput
from .fairness import AGE_BANDS, MISSING, band, band_labels
from .json_values import jsonable

__all__ = [
    "CALIBRATION_BINS",
    "HIGHER_IS_BETTER",
    "SEGMENT_BINS",
    "binary_metrics",
    "calibration_bins",
    "classification_performance",
    "quantile_edges",
    "regression_metrics",
    "regression_performance",
    "segment_labels",
]

CALIBRATION_BINS = 10
SEGMENT_BINS = 5  # quantile bins of a numeric segment column with many values
MAX_CATEGORIES = 10  # a numeric column with more distinct values than this is binned

#: Direction of each metric, for comparing a value with an alert threshold.
HIGHER_IS_BETTER = {
    "auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "brier": False,
    "ece": False,
    "mae": False,
    "rmse": False,
    "r2": True,
}


# --------------------------------------------------------------------------- input checks


def _length(what: str, values: Any) -> int:
    try:
        return len(values)
    except TypeError:
        kind = type(values).__name__
        raise InvalidInput(f"{what} must be a sequence of values, got {kind}") from None


def _common_length(named: Mapping[str, Any]) -> int:
    lengths = {name: _length(name, values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise InvalidInput(f"cannot compute performance: lengths differ ({detail})")
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise InvalidInput("cannot compute performance: no rows")
    return rows


def _columns(what: str, table: Any) -> dict[str, pd.Series]:
    """Segment or protected columns as Series by name (a DataFrame or a mapping of sequences)."""
    if table is None:
        return {}
    if isinstance(table, pd.DataFrame):
        return {str(c): table[c].reset_index(drop=True) for c in table.columns}
    if isinstance(table, Mapping):
        out = {}
        for name, values in table.items():
            _length(f"{what} column {name!r}", values)
            out[str(name)] = pd.Series(values).reset_index(drop=True)
        return out
    raise InvalidInput(f"{what} must be a DataFrame or a mapping of column name to values")


def _show(labels: Sequence[Any]) -> str:
    shown = [jsonable(v) for v in list(labels)[:5]]
    return repr(shown)[:-1] + (", ...]" if len(labels) > 5 else "]")


def _binary_labels(
    y_true: Any, y_pred: Any | None, positive_label: Any
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """Outcomes (and predicted labels) as 0/1 arrays, and the positive label used."""
    truth = pd.Series(np.asarray(y_true, dtype=object))
    missing = int(truth.isna().sum())
    if missing:
        raise InvalidInput(f"outcomes hold {missing} missing values; pass only rows with outcomes")
    predicted = None
    if y_pred is not None:
        predicted = pd.Series(np.asarray(y_pred, dtype=object))
        if predicted.isna().any():
            raise InvalidInput(f"y_pred holds {int(predicted.isna().sum())} missing values")
    seen = pd.unique(truth if predicted is None else pd.concat([truth, predicted]))
    try:
        labels = sorted(seen)
    except TypeError:  # mixed types: keep first-seen order
        labels = list(seen)
    if len(labels) > 2:
        raise InvalidInput(
            f"performance needs binary outcomes; got {len(labels)} labels {_show(labels)}"
        )
    if positive_label is None:
        if not all(_is_zero_one(v) for v in labels):
            raise InvalidInput(
                f"outcomes are labelled {_show(labels)}: name the positive one with positive_label"
            )
        positive_label = 1
    elif len(labels) == 2 and not any(v == positive_label for v in labels):
        raise InvalidInput(
            f"positive_label {jsonable(positive_label)!r} is not one of the labels {_show(labels)}"
        )
    y01 = (truth == positive_label).to_numpy(dtype=int)
    pred01 = None if predicted is None else (predicted == positive_label).to_numpy(dtype=int)
    return y01, pred01, positive_label


def _is_zero_one(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    return isinstance(value, int | float | np.integer | np.floating) and value in (0, 1)


def _probabilities(scores: Any) -> np.ndarray:
    try:
        proba = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInput("scores must be numbers (probabilities of the positive label)") from None
    if proba.ndim != 1:
        raise InvalidInput(f"scores must be one probability per row, got shape {proba.shape}")
    bad = ~np.isfinite(proba) | (proba < 0) | (proba > 1)
    if bad.any():
        raise InvalidInput(
            f"scores must be probabilities in [0, 1]; {int(bad.sum())} are not (missing or out of "
            "range)"
        )
    return proba


def _numbers(what: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be numbers") from None
    bad = ~np.isfinite(array)
    if bad.any():
        raise InvalidInput(f"{what} hold {int(bad.sum())} missing or infinite values")
    return array


# --------------------------------------------------------------------------- metrics


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _auc(y01: np.ndarray, proba: np.ndarray) -> float | None:
    positives = int(y01.sum())
    negatives = y01.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(proba)  # average ranks: a tie between classes counts half
    rank_sum = float(ranks[y01 == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def calibration_bins(
    y01: Any, proba: Any, n_bins: int = CALIBRATION_BINS, strategy: str = "uniform"
) -> list[dict[str, Any]]:
    """Reliability bins of 0/1 outcomes against probabilities: the bins of
    ``sklearn.calibration.calibration_curve`` with their edges and counts.

    Each non-empty bin: ``bin`` (index), ``lower``, ``upper``, ``count``, ``positives``,
    ``mean_predicted``, ``observed_rate``. Raises InvalidInput for a bad ``n_bins``/``strategy``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise InvalidInput(f"calibration needs a whole number of bins >= 1, got {n_bins!r}")
    y01 = np.asarray(y01, dtype=float)
    proba = np.asarray(proba, dtype=float)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(proba, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise InvalidInput(
            f"calibration strategy must be 'uniform' or 'quantile', not {strategy!r}"
        )
    which = np.searchsorted(edges[1:-1], proba)
    total = np.bincount(which, minlength=n_bins)
    predicted = np.bincount(which, weights=proba, minlength=n_bins)
    observed = np.bincount(which, weights=y01, minlength=n_bins)
    return [
        {
            "bin": b,
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(total[b]),
            "positives": int(round(observed[b])),
            "mean_predicted": float(predicted[b] / total[b]),
            "observed_rate": float(observed[b] / total[b]),
        }
        for b in range(n_bins)
        if total[b]
    ]


def _ece(table: list[dict[str, Any]]) -> float | None:
    n = sum(row["count"] for row in table)
    if not n:
        return None
    return (
        sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table) / n
    )


def binary_metrics(
    y01: np.ndarray,
    proba: np.ndarray | None,
    pred01: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    n_bins: int = CALIBRATION_BINS,
    strategy: str = "uniform",
) -> dict[str, Any]:
    """Metrics of checked 0/1 outcomes, positive-label probabilities (or ``None``) and 0/1
    predictions (default: ``proba >= threshold``). Use ``classification_performance`` for
    unchecked input; this is its per-slice worker.
    """
    n = int(y01.size)
    positives = int(y01.sum())
    notes: list[str] = []
    if pred01 is None:
        pred01 = (proba >= threshold).astype(int)
    tp = int(((pred01 == 1) & (y01 == 1)).sum())
    fp = int(((pred01 == 1) & (y01 == 0)).sum())
    fn = int(((pred01 == 0) & (y01 == 1)).sum())
    tn = n - tp - fp - fn
    if positives in (0, n):
        notes.append(
            "auc undefined: the outcomes hold one class only "
            f"({'all positive' if positives else 'all negative'})"
        )
    if tp + fp == 0:
        notes.append("precision undefined: nothing was predicted positive")
    if positives == 0:
        notes.append("recall undefined: no positive outcomes")
    out: dict[str, Any] = {
        "n": n,
        "positives": positives,
        "positive_rate": positives / n,
        "predicted_positive_rate": (tp + fp) / n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": None,
        "brier": None,
        "ece": None,
        "mean_score": None,
        "calibration": [],
    }
    if proba is not None:
        table = calibration_bins(y01, proba, n_bins, strategy)
        out.update(
            auc=_auc(y01, proba),
            brier=float(np.mean((proba - y01) ** 2)),
            ece=_ece(table),
            mean_score=float(proba.mean()),
            calibration=table,
        )
    else:
        notes.append("auc, brier and calibration need scores: only predicted labels were given")
    out["notes"] = notes
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R² and bias of checked finite arrays; R² is None when undefined."""
    n = int(y_true.size)
    error = y_pred - y_true
    notes: list[str] = []
    spread = float(((y_true - y_true.mean()) ** 2).sum())
    if n < 2 or spread == 0:
        r2 = None
        notes.append("r2 undefined: fewer than 2 rows or constant outcomes")
    else:
        r2 = 1 - float((error**2).sum()) / spread
    return {
        "n": n,
        "mae": float(np.abs(error).mean()),
        "rmse": math.sqrt(float((error**2).mean())),
        "r2": r2,
        "bias": float(error.mean()),
        "mean_outcome": float(y_true.mean()),
        "mean_prediction": float(y_pred.mean()),
        "notes": notes,
    }


# --------------------------------------------------------------------------- segments


def quantile_edges(values: Any, bins: int = SEGMENT_BINS) -> list[float]:
    """Inner edges cutting numbers into about ``bins`` equal-count bins (ties merge bins).

    Monitors compute these once on the baseline and pass them as ``bins={column: edges}``, so
    every window is cut the same way. Whole-number data gets whole-number edges.
    """
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if numbers.size == 0 or bins < 2:
        return []
    edges = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
    if np.all(np.mod(numbers, 1) == 0):
        edges = np.ceil(edges)
    inside = np.unique(edges)
    return [float(e) for e in inside if numbers.min() < e <= numbers.max()]


def segment_labels(
    values: Any,
    bins: int | Sequence[float] | None = None,
    *,
    default_edges: Sequence[float] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> tuple[pd.Series, list[str]]:
    """Segment label (a string) of each value and the labels in display order.

    Categories (and numbers with at most ``max_categories`` distinct values) are their own
    segments, sorted. Numbers with more values are cut into bands labelled as in the fairness
    report (``<25``, ``25-34``, ``65+``): at ``bins`` when it is a list of edges, else at
    ``default_edges``, else at ``quantile_edges(values, bins or SEGMENT_BINS)``. Missing values
    are segment ``"missing"``.
    """
    column = pd.Series(values).reset_index(drop=True)
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    explicit = bins is not None and not isinstance(bins, int | np.integer)
    if numeric and (explicit or column.nunique() > max_categories):
        if explicit:
            edges = [float(e) for e in bins]  # type: ignore[union-attr]
        elif default_edges is not None and bins is None:
            edges = list(default_edges)
        else:
            edges = quantile_edges(column, int(bins or SEGMENT_BINS))
        if not edges:  # a single value: one segment
            labels = column.map(lambda v: MISSING if pd.isna(v) else "all")
            return labels, sorted(set(labels))
        labels = band(column.to_numpy(), edges)
        present = set(labels)
        order = [label for label in [*band_labels(edges), MISSING] if label in present]
        return labels, order
    labels = column.map(lambda v: MISSING if pd.isna(v) else str(v))
    return labels, sorted(set(labels))


def _slices(
    columns: dict[str, pd.Series],
    bins: Mapping[str, Any],
    default_edges: Sequence[float] | None,
    max_categories: int,
    metric,
) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, column in columns.items():
        labels, order = segment_labels(
            column, bins.get(name), default_edges=default_edges, max_categories=max_categories
        )
        keys = labels.to_numpy(dtype=object)
        out[name] = {label: metric(np.flatnonzero(keys == label)) for label in order}
    return out


def _check_slices(
    named: dict[str, Any], segments: Any, protected: Any, bins: Any
) -> tuple[dict, dict, dict]:
    segment_columns = _columns("segments", segments)
    protected_columns = _columns("protected", protected)
    lengths = dict(named)
    lengths.update({f"segment {k!r}": v for k, v in segment_columns.items()})
    lengths.update({f"protected {k!r}": v for k, v in protected_columns.items()})
    _common_length(lengths)
    if bins is not None and not isinstance(bins, Mapping):
        raise InvalidInput("bins must map a column name to a number of bins or a list of edges")
    return segment_columns, protected_columns, dict(bins or {})


# --------------------------------------------------------------------------- entry points


def classification_performance(
    y_true: Any,
    scores: Any = None,
    *,
    y_pred: Any = None,
    positive_label: Any = None,
    threshold: float = 0.5,
    n_bins: int = CALIBRATION_BINS,
    strategy: str = "uniform",
    segments: pd.DataFrame | Mapping[str, Any] | None = None,
    protected: pd.DataFrame | Mapping[str, Any] | None = None,
    bins: Mapping[str, int | Sequence[float]] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Binary classification performance, overall, by segment and by protected group.

    ``y_true``: the outcomes (two labels at most; ``positive_label`` names the positive one and
    may be omitted for 0/1 or boolean labels). ``scores``: probability of the positive label per
    row; ``y_pred``: predicted labels, used instead of ``scores >= threshold`` when given (one of
    the two is required). ``segments``/``protected``: DataFrame or mapping of columns aligned
    with the rows; ``bins`` overrides how a numeric column is cut (a count of quantile bins or a
    list of edges). Returns::

        {"problem": "binary", "positive_label", "threshold", "n_bins", "strategy",
         "overall": METRICS, "by_segment": {column: {label: METRICS}},
         "by_group": {attribute: {group: METRICS}}}

    where METRICS holds ``n positives positive_rate predicted_positive_rate tp fp tn fn
    accuracy precision recall f1 auc brier ece mean_score calibration notes``.
    """
    named = {"outcomes": y_true}
    if scores is not None:
        named["scores"] = scores
    if y_pred is not None:
        named["y_pred"] = y_pred
    if scores is None and y_pred is None:
        raise InvalidInput("classification performance needs scores or predicted labels (y_pred)")
    segment_columns, protected_columns, bins = _check_slices(named, segments, protected, bins)
    if not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1:
        raise InvalidInput(f"threshold must be a number in [0, 1], got {threshold!r}")
    y01, pred01, positive = _binary_labels(y_true, y_pred, positive_label)
    proba = None if scores is None else _probabilities(scores)
    calibration_bins(y01[:1], np.zeros(1), n_bins, strategy)  # refuse bad settings up front

    def metric(rows: np.ndarray | slice) -> dict[str, Any]:
        return binary_metrics(
            y01[rows],
            None if proba is None else proba[rows],
            None if pred01 is None else pred01[rows],
            threshold=threshold,
            n_bins=n_bins,
            strategy=strategy,
        )

    return jsonable(
        {
            "problem": "binary",
            "positive_label": positive,
            "threshold": None if y_pred is not None else float(threshold),  # None: y_pred used
            "n_bins": n_bins,
            "strategy": strategy,
            "overall": metric(slice(None)),
            "by_segment": _slices(segment_columns, bins, None, max_categories, metric),
            "by_group": _slices(protected_columns, bins, AGE_BANDS, max_categories, metric),
        }
    )


def regression_performance(
    y_true: Any,
    y_pred: Any,
    *,
    segments: pd.DataFrame | Mapping[str, Any] | None = None,
    protected: pd.DataFrame | Mapping[str, Any] | None = None,
    bins: Mapping[str, int | Sequence[float]] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Regression performance (MAE, RMSE, R², bias), overall, by segment and protected group.

    Same shape as ``classification_performance`` with ``"problem": "regression"`` and METRICS
    holding ``n mae rmse r2 bias mean_outcome mean_prediction notes``.
    """
    named = {"outcomes": y_true, "predictions": y_pred}
    segment_columns, protected_columns, bins = _check_slices(named, segments, protected, bins)
    truth = _numbers("outcomes", y_true)
    predicted = _numbers("predictions", y_pred)

    def metric(rows: np.ndarray | slice) -> dict[str, Any]:
        return regression_metrics(truth[rows], predicted[rows])

    return jsonable(
        {
            "problem": "regression",
            "overall": metric(slice(None)),
            "by_segment": _slices(segment_columns, bins, None, max_categories, metric),
            "by_group": _slices(protected_columns, bins, AGE_BANDS, max_categories, metric),
        }
    )
