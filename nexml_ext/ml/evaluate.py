"""Performance of a model on labelled data: classification, regression and clustering reports.

Point estimates come from scikit-learn and scipy. Bootstrap confidence intervals are percentile
intervals over ``n`` resamples drawn with replacement (``bootstrap.py``); the headline metrics are
computed for all resamples at once from their weighted forms. A resample in which a metric is
undefined (e.g. AUC when the resample holds one class) is left out of that metric's interval;
``valid`` says how many resamples were used.

Every result is a dataclass whose ``to_dict()`` is plain JSON (NaN becomes ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from ..errors import InvalidInput
from .bootstrap import (
    ConfidenceInterval,
    binary_weighted,
    bootstrap_ci,
    bootstrap_intervals,
    common_length,
    multiclass_weighted,
    regression_weighted,
)
from .json_values import jsonable

__all__ = [
    "CALIBRATION_BINS",
    "RESIDUAL_QUANTILES",
    "ClassificationReport",
    "ClusteringReport",
    "ConfidenceInterval",
    "RegressionReport",
    "binary_metrics",
    "bootstrap_ci",
    "by_segment",
    "calibration_table",
    "classification_report",
    "clustering_report",
    "evaluate",
    "jsonable",
    "regression_metrics",
    "regression_report",
]

CALIBRATION_BINS = 10
RESIDUAL_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


# --------------------------------------------------------------------------- segments


def by_segment(
    segments: pd.Series | Sequence[Any],
    metric_fn: Callable[..., dict[str, float]],
    *arrays: Any,
) -> dict[str, dict[str, float]]:
    """``metric_fn(*arrays_of_segment)`` for each segment value, plus ``n`` (rows in it).

    ``segments`` is aligned by position with ``arrays``; missing values form segment
    ``"missing"``. Keys are the segment values as strings, in sorted order.
    Raises InvalidInput when the lengths differ or the arrays are empty.
    """
    common_length(segments, *arrays)
    keys = pd.Series(np.asarray(segments, dtype=object)).map(
        lambda v: "missing" if pd.isna(v) else str(v)
    )
    arrays = tuple(np.asarray(a) for a in arrays)
    out: dict[str, dict[str, float]] = {}
    for key, positions in sorted(keys.groupby(keys).indices.items()):
        values = metric_fn(*(a[positions] for a in arrays))
        out[key] = {"n": float(len(positions)), **{k: float(v) for k, v in values.items()}}
    return out


def _ks(y01: np.ndarray, proba: np.ndarray) -> float:
    # Only the statistic is used; the asymptotic method skips the slow exact p-value.
    return float(ks_2samp(proba[y01 == 1], proba[y01 == 0], method="asymp").statistic)


def binary_metrics(y01: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics of 0/1 labels and positive-class probabilities; NaN where undefined."""
    both = 0 < y01.sum() < y01.size
    pred = (proba >= threshold).astype(int)
    auc = float(skm.roc_auc_score(y01, proba)) if both else math.nan
    return {
        "accuracy": float(skm.accuracy_score(y01, pred)),
        "roc_auc": auc,
        "log_loss": float(skm.log_loss(y01, proba, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y01, proba, labels=[0, 1])),
        "ks": _ks(y01, proba) if both else math.nan,
        "gini": 2 * auc - 1,
        "precision": float(skm.precision_score(y01, pred, zero_division=0)),
        "recall": float(skm.recall_score(y01, pred, zero_division=0)),
        "f1": float(skm.f1_score(y01, pred, zero_division=0)),
        "positive_rate": float(y01.mean()),
        "mean_score": float(proba.mean()),
    }


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassificationReport:
    """Classification performance; binary reports also carry a calibration table."""

    problem: str  # "binary" or "multiclass"
    n: int
    classes: list[Any]
    positive: Any  # None for multiclass
    threshold: float | None  # None for multiclass (the predicted class is the most probable)
    metrics: dict[str, float]
    confusion: list[list[int]]  # rows: actual, columns: predicted, both in ``classes`` order
    calibration: list[dict[str, float]] = field(default_factory=list)
    intervals: dict[str, ConfidenceInterval] = field(default_factory=dict)
    segments: dict[str, dict[str, float]] = field(default_factory=dict)

    HEADLINE = {"binary": ("roc_auc", "gini", "ks", "brier"), "multiclass": ("accuracy",)}

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "problem": self.problem,
                "n": self.n,
                "classes": self.classes,
                "positive": self.positive,
                "threshold": self.threshold,
                "metrics": self.metrics,
                "confusion_matrix": {"labels": self.classes, "matrix": self.confusion},
                "calibration": self.calibration,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "segments": self.segments,
            }
        )

    def flat(self) -> dict[str, float]:
        """Finite metrics, ``rows`` and the headline intervals as ``<metric>_ci_low/_high``."""
        return _flat(self.metrics, self.n, self.intervals, self.HEADLINE[self.problem])


def _flat(
    metrics: dict[str, float],
    n: int,
    intervals: dict[str, ConfidenceInterval],
    headline: Sequence[str],
) -> dict[str, float]:
    out = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    out["rows"] = float(n)
    for name in headline:
        ci = intervals.get(name)
        if ci is not None and math.isfinite(ci.low):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = ci.low, ci.high
    return out


def calibration_table(y01: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> list:
    """Equal-frequency bins of the predicted probability: mean predicted vs observed rate.

    Bins are quantiles of the scores, so tied scores can merge bins (fewer than ``bins`` rows).
    """
    edges = np.unique(np.quantile(proba, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        which = np.zeros(proba.size, dtype=int)
        edges = np.array([proba.min(), proba.max()])
    else:  # bins are (lower, upper], the first one closed on the left
        which = np.clip(np.searchsorted(edges, proba, side="left") - 1, 0, edges.size - 2)
    table = []
    for b in range(edges.size - 1):
        inside = which == b
        count = int(inside.sum())
        if count:
            table.append(
                {
                    "bin": b,
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "count": count,
                    "positives": int(y01[inside].sum()),
                    "mean_predicted": float(proba[inside].mean()),
                    "observed_rate": float(y01[inside].mean()),
                }
            )
    return table


def classification_report(
    y_true: Any,
    scores_or_proba: Any,
    *,
    classes: Sequence[Any] | None = None,
    positive: Any = None,
    threshold: float = 0.5,
    n_bootstrap: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    segments: pd.Series | None = None,
) -> ClassificationReport:
    """Evaluate classification: binary from positive-class probabilities, multiclass from a
    probability matrix (columns in ``classes`` order, default: sorted labels of ``y_true``).

    Binary: ``positive`` defaults to the last of the sorted classes; a row is predicted positive
    when its probability >= ``threshold``. A two-column matrix is read as binary. Metrics:
    accuracy, roc_auc, gini (2·AUC−1), ks (scipy ks_2samp of positive vs negative scores),
    log_loss, brier, precision/recall/f1 at the threshold. Multiclass: accuracy, f1/precision/
    recall (macro), log_loss, roc_auc (one-vs-rest macro). ``n_bootstrap=0`` skips intervals.
    Raises InvalidInput on empty or unequal-length input, probabilities outside [0, 1] or not
    summing to one, labels outside ``classes``, or fewer than two classes present.
    """
    y = np.asarray(y_true)
    p = np.asarray(scores_or_proba, dtype=float)
    rows = common_length(y, p, *([] if segments is None else [segments]))
    if p.ndim not in (1, 2) or not np.isfinite(p).all():
        raise InvalidInput("cannot evaluate: scores must be a finite vector or probability matrix")
    if (p < 0).any() or (p > 1).any():
        raise InvalidInput("cannot evaluate: probabilities must lie in [0, 1]")
    labels = list(classes) if classes is not None else sorted(pd.unique(y).tolist())
    unknown = set(pd.unique(y).tolist()) - set(labels)
    if unknown:
        raise InvalidInput(f"cannot evaluate: labels {sorted(map(str, unknown))} not in classes")
    if p.ndim == 2 and p.shape[1] != len(labels):
        raise InvalidInput(
            f"cannot evaluate: {p.shape[1]} probability columns for {len(labels)} classes"
        )
    if p.ndim == 2 and not np.allclose(p.sum(axis=1), 1, atol=1e-6):
        raise InvalidInput("cannot evaluate: probability rows must sum to one")
    if len(set(y.tolist())) < 2:
        raise InvalidInput(f"cannot evaluate: y_true holds a single class ({y[0]!r})")
    if p.ndim == 1 or p.shape[1] == 2:
        if len(labels) != 2:
            raise InvalidInput(f"cannot evaluate: binary scores need 2 classes, got {len(labels)}")
        positive = labels[-1] if positive is None else positive
        if positive not in labels:
            raise InvalidInput(f"cannot evaluate: positive class {positive!r} not in classes")
        if p.ndim == 2:
            p = p[:, labels.index(positive)]
        return _binary_report(y, p, labels, positive, threshold, n_bootstrap, seed, alpha, segments)
    return _multiclass_report(y, p, labels, rows, n_bootstrap, seed, alpha, segments)


def _binary_report(y, p, labels, positive, threshold, n_bootstrap, seed, alpha, segments):
    if not 0 <= threshold <= 1:
        raise InvalidInput(f"cannot evaluate: threshold must be in [0, 1], got {threshold}")
    negative = labels[0] if labels[1] == positive else labels[1]
    y01 = (y == positive).astype(int)
    metrics = binary_metrics(y01, p, threshold)
    pred = (p >= threshold).astype(int)
    confusion = skm.confusion_matrix(y01, pred, labels=[0, 1]).tolist()
    yf = y01.astype(float)
    intervals = bootstrap_intervals(
        lambda w: binary_weighted(w, yf, p, threshold), metrics, y.size, n_bootstrap, seed, alpha
    )
    segs = {}
    if segments is not None:
        segs = by_segment(segments, lambda a, b: binary_metrics(a, b, threshold), y01, p)
    return ClassificationReport(
        "binary",
        int(y.size),
        [negative, positive],
        positive,
        float(threshold),
        metrics,
        confusion,
        calibration_table(y01, p),
        intervals,
        segs,
    )


def _multiclass_metrics(y_idx: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    every = len(np.unique(y_idx)) == k
    return {
        "accuracy": float(skm.accuracy_score(y_idx, pred)),
        "f1_macro": float(
            skm.f1_score(y_idx, pred, average="macro", labels=range(k), zero_division=0)
        ),
        "precision_macro": float(
            skm.precision_score(y_idx, pred, average="macro", labels=range(k), zero_division=0)
        ),
        "recall_macro": float(
            skm.recall_score(y_idx, pred, average="macro", labels=range(k), zero_division=0)
        ),
        "log_loss": float(skm.log_loss(y_idx, proba, labels=range(k))),
        "roc_auc": float(skm.roc_auc_score(y_idx, proba, multi_class="ovr", labels=range(k)))
        if every
        else math.nan,
    }


def _multiclass_report(y, p, labels, rows, n_bootstrap, seed, alpha, segments):
    position = {label: i for i, label in enumerate(labels)}
    y_idx = np.array([position[v] for v in y.tolist()])
    metrics = _multiclass_metrics(y_idx, p)
    confusion = skm.confusion_matrix(y_idx, p.argmax(axis=1), labels=range(len(labels)))
    intervals = bootstrap_intervals(
        lambda w: multiclass_weighted(w, y_idx, p), metrics, rows, n_bootstrap, seed, alpha
    )
    segs = {} if segments is None else by_segment(segments, _multiclass_metrics, y_idx, p)
    return ClassificationReport(
        "multiclass", rows, labels, None, None, metrics, confusion.tolist(), [], intervals, segs
    )


# --------------------------------------------------------------------------- regression


@dataclass(frozen=True)
class RegressionReport:
    """Regression performance; residuals are ``y_true - y_pred``."""

    n: int
    metrics: dict[str, float]
    residual_quantiles: dict[str, float]
    intervals: dict[str, ConfidenceInterval] = field(default_factory=dict)
    segments: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "n": self.n,
                "metrics": self.metrics,
                "residual_quantiles": self.residual_quantiles,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "segments": self.segments,
            }
        )

    def flat(self) -> dict[str, float]:
        """Finite metrics, ``rows`` and the RMSE and R² intervals as ``<metric>_ci_low/_high``."""
        return _flat(self.metrics, self.n, self.intervals, ("rmse", "r2"))


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² (NaN when ``y`` is constant) and mean residual."""
    constant = bool(np.all(y == y[0]))
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": math.nan if constant else float(skm.r2_score(y, pred)),
        "mean_residual": float(np.mean(y - pred)),
    }


def regression_report(
    y_true: Any,
    y_pred: Any,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    segments: pd.Series | None = None,
) -> RegressionReport:
    """RMSE, MAE, R², mean residual, residual quantiles (1 % … 99 %), bootstrap intervals of
    RMSE, MAE and R², and the metrics by segment. Raises InvalidInput on empty,
    unequal-length or non-finite input.
    """
    common_length(y_true, y_pred, *([] if segments is None else [segments]))
    try:
        y = np.asarray(y_true, dtype=float)
        pred = np.asarray(y_pred, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("cannot evaluate regression: values must be numeric") from exc
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise InvalidInput("cannot evaluate regression: values must be finite")
    metrics = regression_metrics(y, pred)
    quantiles = np.quantile(y - pred, RESIDUAL_QUANTILES)
    intervals = bootstrap_intervals(
        lambda w: regression_weighted(w, y, pred), metrics, y.size, n_bootstrap, seed, alpha
    )
    segs = {} if segments is None else by_segment(segments, regression_metrics, y, pred)
    return RegressionReport(
        int(y.size),
        metrics,
        {
            f"q{round(q * 100):02d}": float(v)
            for q, v in zip(RESIDUAL_QUANTILES, quantiles, strict=True)
        },
        intervals,
        segs,
    )


# --------------------------------------------------------------------------- clustering


@dataclass(frozen=True)
class ClusteringReport:
    """Cluster sizes and separation (silhouette: higher is better, in [-1, 1])."""

    n: int
    sizes: dict[str, int]
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"n": self.n, "sizes": self.sizes, "metrics": self.metrics})


def clustering_report(
    X: Any, labels: Any, *, sample_size: int = 10_000, seed: int = 0
) -> ClusteringReport:
    """Silhouette (on a random ``sample_size`` rows when there are more, as it is quadratic),
    Davies–Bouldin, Calinski–Harabasz and the size of each cluster.
    Raises InvalidInput on empty or unequal-length input or fewer than 2 / as many clusters
    as rows.
    """
    rows = common_length(X, labels)
    x = np.asarray(X, dtype=float)
    lab = np.asarray(labels)
    found = pd.Series(lab).value_counts().sort_index()
    if not 2 <= found.size < rows:
        raise InvalidInput(
            f"cannot evaluate clustering: need 2 to {rows - 1} clusters, got {found.size}"
        )
    sample = sample_size if rows > sample_size else None
    metrics = {
        "silhouette": float(skm.silhouette_score(x, lab, sample_size=sample, random_state=seed)),
        "davies_bouldin": float(skm.davies_bouldin_score(x, lab)),
        "calinski_harabasz": float(skm.calinski_harabasz_score(x, lab)),
        "clusters": float(found.size),
    }
    return ClusteringReport(rows, {str(k): int(v) for k, v in found.items()}, metrics)


# --------------------------------------------------------------------------- convenience


def evaluate(model: Any, data: pd.DataFrame, target: str, problem_type: str) -> dict[str, float]:
    """Score ``data`` with ``model`` and compare with ``data[target]``: a flat metric dict.

    Binary: accuracy, roc_auc, log_loss, brier, ks, rows, gini, precision, recall, f1 (at 0.5)
    and headline bootstrap intervals; multiclass: accuracy, f1_macro, log_loss, rows, …;
    regression: rmse, mae, r2, rows, …. Raises InvalidInput for a missing target or an
    unknown problem type.
    """
    if target not in data.columns:
        raise InvalidInput(f"cannot evaluate: target column {target!r} is not in the data")
    y = data[target]
    x = data.drop(columns=[target])
    if problem_type in ("binary", "multiclass"):
        proba = model.predict_proba(x)
        classes = list(model.classes_)
        if problem_type == "binary":
            report = classification_report(y, proba[:, 1], classes=classes, positive=classes[1])
        else:
            report = classification_report(y, proba, classes=classes)
        return report.flat()
    if problem_type == "regression":
        return regression_report(y, model.predict(x)).flat()
    raise InvalidInput(f"cannot evaluate problem type {problem_type!r}")
