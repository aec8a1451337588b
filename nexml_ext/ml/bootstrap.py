"""Percentile bootstrap confidence intervals over resamples drawn with replacement.

``bootstrap_ci`` wraps any metric. The reports' headline metrics are computed for all resamples
at once, by turning each resample into a row of counts (how often each observation was drawn)
and using the weighted form of the metric (``binary_weighted``, ``multiclass_weighted``,
``regression_weighted``, fed to ``bootstrap_intervals``). A resample in which a metric is
undefined (e.g. AUC when the resample holds one class) is left out of that metric's interval;
``valid`` says how many resamples were used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .json_values import jsonable

_CHUNK_CELLS = 2_000_000  # resamples × rows held in memory at once


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap interval around a point estimate."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    valid: int

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self.__dict__)


def _resamples(rows: int, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of ``n`` resamples with replacement, in chunks of shape (k, rows)."""
    per_chunk = max(1, _CHUNK_CELLS // rows)
    done = 0
    while done < n:
        k = min(per_chunk, n - done)
        yield rng.integers(0, rows, size=(k, rows))
        done += k


def _counts(indices: np.ndarray, rows: int) -> np.ndarray:
    """How often each row is drawn in each resample: (k, rows) indices -> (k, rows) counts."""
    k = indices.shape[0]
    offsets = (np.arange(k) * rows)[:, None]
    flat = np.bincount((indices + offsets).ravel(), minlength=k * rows)
    return flat.reshape(k, rows).astype(float)


def _percentile(estimate: float, stats: np.ndarray, n: int, alpha: float) -> ConfidenceInterval:
    finite = stats[np.isfinite(stats)]
    if finite.size:
        low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    else:
        low = high = math.nan
    return ConfidenceInterval(float(estimate), float(low), float(high), 1 - alpha, n, finite.size)


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: Any,
    n: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    vectorized: bool = False,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, resampling rows with replacement.

    With ``vectorized=False`` the metric is called as ``metric_fn(*resampled_arrays) -> float``
    once per resample (a ``ValueError`` from it counts as undefined). With ``vectorized=True``
    it is called as ``metric_fn(counts, *arrays) -> array(k)``, where ``counts`` (k × rows) says
    how often each row was drawn; ``metric_fn(ones((1, rows)), *arrays)`` is the estimate. Both
    forms see the same resamples for the same ``seed``, so they give the same interval.
    Raises InvalidInput on empty or unequal-length arrays, ``n < 1`` or ``alpha`` outside (0, 1).
    """
    rows = common_length(*arrays)
    if n < 1:
        raise InvalidInput(f"bootstrap needs at least one resample, got n={n}")
    if not 0 < alpha < 1:
        raise InvalidInput(f"bootstrap alpha must be in (0, 1), got {alpha}")
    arrays = tuple(np.asarray(a) for a in arrays)
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    if vectorized:
        estimate = float(np.asarray(metric_fn(np.ones((1, rows)), *arrays))[0])
        for idx in _resamples(rows, n, rng):
            chunks.append(np.asarray(metric_fn(_counts(idx, rows), *arrays), dtype=float))
    else:
        estimate = float(metric_fn(*arrays))
        for idx in _resamples(rows, n, rng):
            chunks.append(
                np.array([_undefined_as_nan(metric_fn, *(a[i] for a in arrays)) for i in idx])
            )
    return _percentile(estimate, np.concatenate(chunks), n, alpha)


def _undefined_as_nan(metric_fn: Callable[..., Any], *arrays: np.ndarray) -> float:
    try:
        return float(metric_fn(*arrays))
    except ValueError:
        return math.nan


# --------------------------------------------------------------------------- weighted metrics


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def binary_weighted(w: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Binary metrics for each row of resample counts ``w`` (k × rows), all at once."""
    rows = y.size
    order = np.argsort(p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct score
    pos = np.add.reduceat(w[:, order] * y[order], starts, axis=1)
    neg = np.add.reduceat(w[:, order] * (1 - y[order]), starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    below_neg = np.cumsum(neg, axis=1) - neg
    auc = _ratio((pos * (below_neg + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    gap = np.abs(
        _ratio(np.cumsum(pos, axis=1), n_pos[:, None])
        - _ratio(np.cumsum(neg, axis=1), n_neg[:, None])
    )
    ks = np.where((n_pos > 0) & (n_neg > 0), np.nanmax(np.nan_to_num(gap), axis=1), np.nan)
    eps = np.finfo(float).eps
    q = np.clip(p, eps, 1 - eps)
    pred = (p >= threshold).astype(float)
    tp, predicted = w @ (pred * y), w @ pred
    return {
        "accuracy": w @ (pred == y) / rows,
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks,
        "log_loss": w @ -(y * np.log(q) + (1 - y) * np.log(1 - q)) / rows,
        "brier": w @ (p - y) ** 2 / rows,
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, n_pos),
        "f1": _ratio(2 * tp, predicted + n_pos),
    }


def multiclass_weighted(w: np.ndarray, y_idx: np.ndarray, proba: np.ndarray) -> dict:
    """Accuracy and log loss for each row of resample counts ``w`` (k × rows), all at once."""
    rows = y_idx.size
    picked = np.clip(proba[np.arange(rows), y_idx], np.finfo(float).eps, 1)
    return {
        "accuracy": w @ (proba.argmax(axis=1) == y_idx) / rows,
        "log_loss": w @ -np.log(picked) / rows,
    }


def regression_weighted(w: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict:
    """RMSE, MAE and R² for each row of resample counts ``w`` (k × rows), all at once."""
    rows = y.size
    r = y - pred
    yc = y - y.mean()  # centring keeps the sum of squares numerically stable
    ss_res = w @ r**2
    ss_tot = w @ yc**2 - (w @ yc) ** 2 / rows
    return {
        "rmse": np.sqrt(ss_res / rows),
        "mae": w @ np.abs(r) / rows,
        "r2": 1 - _ratio(ss_res, ss_tot),
    }


def bootstrap_intervals(
    weighted: Callable[[np.ndarray], dict],
    point: dict[str, float],
    rows: int,
    n: int,
    seed: int,
    alpha: float,
) -> dict[str, ConfidenceInterval]:
    """An interval per metric of ``weighted(counts)`` around ``point``; {} when ``n <= 0``."""
    if n <= 0:
        return {}
    rng = np.random.default_rng(seed)
    chunks = [weighted(_counts(idx, rows)) for idx in _resamples(rows, n, rng)]
    return {
        name: _percentile(point[name], np.concatenate([c[name] for c in chunks]), n, alpha)
        for name in chunks[0]
    }


def common_length(*arrays: Any) -> int:
    """The arrays' common length. Raises InvalidInput when they differ or are empty."""
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise InvalidInput(f"cannot evaluate: inputs differ in length {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    if rows == 0:
        raise InvalidInput("cannot evaluate: no rows")
    return rows
