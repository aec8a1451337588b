"""Drift of current data against a stored baseline profile (``nexml-profile/1``).

Per column, two views of the same comparison:

* **PSI** (population stability index), the traffic light regulators expect. Numeric columns are
  binned on the baseline's quantile edges; categorical columns use the baseline's categories plus
  one "other" cell. With ``e`` the baseline and ``a`` the current proportions of a cell::

      e' = max(e, epsilon),  a' = max(a, epsilon)       (clipped, not renormalised)
      PSI = sum over every cell of (a' - e') * ln(a' / e')

  A cell empty on one side is kept, not dropped: dropping it (as a well-known MRM library does)
  turns a uniform[0, 1] baseline against a uniform[0, 0.5] sample into PSI ~0.35 instead of ~3.8.
  Status is ``ok`` below ``psi_warn`` (0.10), ``warn`` below ``psi_alert`` (0.25), else ``alert``.

* **A test or a distance chosen by sample size** (``method="auto"``): with at most
  ``max_test_rows`` (1000) current values, a test — two-sample Kolmogorov-Smirnov against the
  profile's reference sample (numeric), chi-square goodness of fit against the baseline
  proportions (categorical); drift when the p-value is below ``p_value`` (0.05). Above it, where
  any test rejects everything, a distance — Wasserstein distance to the reference sample divided
  by the baseline standard deviation (numeric), Jensen-Shannon distance in base 2, so in [0, 1]
  (categorical); drift when it reaches ``distance_threshold`` (0.1). ``method="test"`` or
  ``"distance"`` forces one kind.

Binning convention (the profile's): edges ``e0 < e1 < ... < ek`` make k bins; bin 0 is
``[e0, e1]``, bin i is ``(ei, ei+1]``; values below e0 fall into bin 0, above ek into bin k-1. A
single edge ``c`` (a constant baseline column) makes two cells, ``<= c`` and ``> c``. Missing
values (NaN, None, and for numeric columns ±inf) are left out of every statistic and reported as
the change in missing rate; a column with no values on one side has no statistics and is
``alert`` (``ok`` when both sides are empty), with a note. Each column is read once: one sort of
its values gives the bin counts (binary search of the edges), the Wasserstein distance (a linear
merge with the reference sample) and the KS inputs; categorical columns are one hash count
(``value_counts``).

Each column's result is built from counts (``numeric_column``, ``categorical_column``), so
``ml/batch.py`` builds the same results from counts summed over chunks of data larger than
memory (``drift_columns`` checks a request, ``assemble_report`` makes the report).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InvalidInput

PROFILE_FORMAT = "nexml-profile/1"
REPORT_FORMAT = "nexml-drift/1"
OTHER = "__other__"
METHODS = ("auto", "test", "distance")
UNSEEN_LISTED = 20  # the largest unseen categories named in a result; the rest are only counted


@dataclass(frozen=True)
class DriftSettings:
    """Thresholds and choices of one drift comparison (see the module docstring)."""

    psi_warn: float = 0.10
    psi_alert: float = 0.25
    epsilon: float = 1e-4
    method: str = "auto"
    max_test_rows: int = 1000
    p_value: float = 0.05
    distance_threshold: float = 0.1
    dataset_drift_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.psi_warn <= self.psi_alert:
            raise InvalidInput(
                f"drift thresholds need 0 <= psi_warn <= psi_alert, got {self.psi_warn} "
                f"and {self.psi_alert}"
            )
        if not 0 < self.epsilon < 1:
            raise InvalidInput(f"drift epsilon must be in (0, 1), got {self.epsilon}")
        if self.method not in METHODS:
            raise InvalidInput(f"drift method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.p_value < 1 or self.distance_threshold <= 0 or self.max_test_rows < 0:
            raise InvalidInput("drift p_value must be in (0, 1), distance_threshold > 0, rows >= 0")
        if not 0 < self.dataset_drift_share <= 1:
            raise InvalidInput(
                f"dataset_drift_share must be in (0, 1], got {self.dataset_drift_share}"
            )


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column. ``cells`` are bin edges (numeric) or category names (categorical);
    ``expected`` and ``actual`` the unclipped baseline and current proportions of each cell."""

    column: str
    kind: str
    rows: int  # current non-missing values compared
    psi: float | None
    status: str  # ok | warn | alert
    test: str | None  # ks | wasserstein | chi-square | jensen-shannon
    statistic: float | None
    p_value: float | None  # tests only
    threshold: float | None  # the p-value or distance threshold applied
    drift_detected: bool
    missing_rate_baseline: float
    missing_rate_current: float
    missing_rate_change: float
    cells: list[Any] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)
    unseen: dict[str, float] = field(default_factory=dict)  # category -> share of current values
    unseen_categories: int = 0
    unseen_share: float = 0.0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of a current table against a baseline profile, per column and as a whole."""

    rows: int
    baseline_rows: int
    settings: DriftSettings
    columns: dict[str, ColumnDrift]
    prediction: ColumnDrift | None
    drift_share: float  # fraction of feature columns at ``alert``
    dataset_drift: bool  # drift_share >= settings.dataset_drift_share

    @property
    def alerts(self) -> list[str]:
        return [name for name, c in self.columns.items() if c.status == "alert"]

    def to_dict(self) -> dict[str, Any]:
        statuses = [c.status for c in self.columns.values()]
        return {
            "format": REPORT_FORMAT,
            "rows": self.rows,
            "baseline_rows": self.baseline_rows,
            "settings": asdict(self.settings),
            "n_columns": len(statuses),
            "n_warn": statuses.count("warn"),
            "n_alert": statuses.count("alert"),
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }


def psi(expected: Any, actual: Any, *, epsilon: float = 1e-4) -> float:
    """PSI of two proportion vectors over the same cells, empty cells kept (module docstring)."""
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    baseline: dict,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    psi_warn: float = 0.10,
    psi_alert: float = 0.25,
    epsilon: float = 1e-4,
    score_column: str | None = None,
    method: str = "auto",
    max_test_rows: int = 1000,
    p_value: float = 0.05,
    distance_threshold: float = 0.1,
    dataset_drift_share: float = 0.5,
) -> DriftReport:
    """Compare ``current`` with the ``baseline`` profile, column by column.

    ``columns`` defaults to every profiled column except ``score_column``; the score column, when
    given, is compared the same way and reported as ``prediction`` (not counted in the share).
    Raises InvalidInput for a malformed baseline, an empty ``current``, columns missing from
    ``current`` or from the baseline, or thresholds out of range.
    """
    settings = DriftSettings(
        psi_warn=psi_warn,
        psi_alert=psi_alert,
        epsilon=epsilon,
        method=method,
        max_test_rows=max_test_rows,
        p_value=p_value,
        distance_threshold=distance_threshold,
        dataset_drift_share=dataset_drift_share,
    )
    if not isinstance(current, pd.DataFrame):
        raise InvalidInput("drift needs the current data as a pandas DataFrame")
    if len(current) == 0:
        raise InvalidInput("cannot compute drift: the current data has no rows")
    profiles, names = drift_columns(baseline, list(current.columns), columns, score_column)
    results = {c: _column_drift(c, profiles[c], current[c], settings) for c in names}
    prediction = None
    if score_column is not None:
        prediction = _column_drift(
            score_column, profiles[score_column], current[score_column], settings
        )
    return assemble_report(baseline, len(current), settings, results, prediction)


def drift_columns(
    baseline: Any,
    available: list[Any],
    columns: list[str] | None = None,
    score_column: str | None = None,
) -> tuple[dict[str, dict], list[str]]:
    """The checked column profiles of ``baseline`` and the feature columns to compare (the score
    column left out), given the current data's ``available`` columns. Raises InvalidInput as
    ``drift_report`` does."""
    profiles = _profiles(baseline)
    if score_column is not None and score_column not in profiles:
        raise InvalidInput(f"score column {score_column!r} has no baseline profile")
    names = list(profiles) if columns is None else list(columns)
    names = [c for c in names if c != score_column]
    unknown = [c for c in names if c not in profiles]
    if unknown:
        raise InvalidInput(f"no baseline profile for column(s): {', '.join(map(str, unknown))}")
    wanted = names + ([score_column] if score_column is not None else [])
    absent = [c for c in wanted if c not in available]
    if absent:
        raise InvalidInput(f"current data lacks baseline column(s): {', '.join(map(str, absent))}")
    if not wanted:
        raise InvalidInput("cannot compute drift: no columns to compare")
    return profiles, names


def assemble_report(
    baseline: dict,
    rows: int,
    settings: DriftSettings,
    results: dict[str, ColumnDrift],
    prediction: ColumnDrift | None = None,
) -> DriftReport:
    """The report of per-column results: the share of columns at ``alert`` and the verdict."""
    share = sum(r.status == "alert" for r in results.values()) / len(results) if results else 0.0
    return DriftReport(
        rows=int(rows),
        baseline_rows=int(baseline.get("rows", 0)),
        settings=settings,
        columns=results,
        prediction=prediction,
        drift_share=float(share),
        dataset_drift=bool(results) and share >= settings.dataset_drift_share,
    )


def score_drift(
    baseline_column: dict,
    current_scores: Any,
    *,
    psi_warn: float = 0.10,
    psi_alert: float = 0.25,
    epsilon: float = 1e-4,
    method: str = "auto",
    max_test_rows: int = 1000,
    p_value: float = 0.05,
    distance_threshold: float = 0.1,
    name: str = "score",
) -> ColumnDrift:
    """Prediction drift: one profiled score column (``baseline["columns"][...]``) against current
    scores (array-like or Series). Raises InvalidInput when there are no current scores."""
    settings = DriftSettings(
        psi_warn=psi_warn,
        psi_alert=psi_alert,
        epsilon=epsilon,
        method=method,
        max_test_rows=max_test_rows,
        p_value=p_value,
        distance_threshold=distance_threshold,
    )
    series = current_scores if isinstance(current_scores, pd.Series) else pd.Series(current_scores)
    if len(series) == 0:
        raise InvalidInput("cannot compute score drift: no current scores")
    return _column_drift(name, _column_profile(name, baseline_column), series, settings)


# --- per column -------------------------------------------------------------------------------


def _profiles(baseline: Any) -> dict[str, dict]:
    if not isinstance(baseline, dict) or baseline.get("format") != PROFILE_FORMAT:
        raise InvalidInput(f"drift baseline must be a {PROFILE_FORMAT} profile")
    cols = baseline.get("columns")
    if not isinstance(cols, dict) or not cols:
        raise InvalidInput("drift baseline profile has no columns")
    return {name: _column_profile(name, p) for name, p in cols.items()}


def _column_profile(name: str, profile: Any) -> dict:
    kind = profile.get("kind") if isinstance(profile, dict) else None
    if kind == "numeric" and isinstance(profile.get("edges"), list):
        return profile
    if kind == "categorical" and isinstance(profile.get("frequencies"), dict):
        return profile
    raise InvalidInput(f"baseline profile of column {name!r} is malformed")


def _status(value: float, s: DriftSettings) -> str:
    return "alert" if value >= s.psi_alert else "warn" if value >= s.psi_warn else "ok"


def _column_drift(name: str, profile: dict, series: pd.Series, s: DriftSettings) -> ColumnDrift:
    if profile["kind"] == "numeric":
        return _numeric_drift(name, profile, series, s)
    return _categorical_drift(name, profile, series, s)


def uses_test(n: int, s: DriftSettings) -> bool:
    """Whether ``n`` current values get a test (else a distance) under ``s``."""
    return s.method == "test" or (s.method == "auto" and n <= s.max_test_rows)


def one_side_empty(name: str, kind: str, profile: dict, rows: int, total: int) -> ColumnDrift:
    """A column with no values in the baseline or in the current data: nothing to compare, and
    drift (alert) unless both sides are empty."""
    base = float(profile.get("missing_rate", 0.0))
    current = 1.0 - rows / total
    if rows == 0:
        note = f"all {total} current values are missing"
    else:
        note = "the baseline holds no values of this column"
    drifted = rows > 0 or base < 1.0
    return ColumnDrift(
        column=name,
        kind=kind,
        rows=rows,
        psi=None,
        status="alert" if drifted else "ok",
        test=None,
        statistic=None,
        p_value=None,
        threshold=None,
        drift_detected=drifted,
        missing_rate_baseline=base,
        missing_rate_current=current,
        missing_rate_change=current - base,
        note=note,
    )


def numeric_values(name: str, series: pd.Series) -> np.ndarray:
    """A numeric column's values as floats (missing as NaN); InvalidInput if not numeric."""
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"column {name!r} is numeric in the baseline but not in the current data"
        ) from None


def numeric_cells(name: str, profile: dict) -> tuple[np.ndarray, np.ndarray]:
    """(interior edges, baseline proportions) of a numeric column with at least one edge: the
    current count of each cell is the difference of the counts at or below the interior edges."""
    edges = np.asarray(profile["edges"], dtype=float)
    if edges.size == 1:  # constant baseline: "<= c" holds everything, "> c" nothing
        return edges, np.array([1.0, 0.0])
    counts = np.asarray(profile["counts"], dtype=float)
    if counts.size != edges.size - 1 or counts.sum() <= 0:
        raise InvalidInput(f"baseline profile of column {name!r} has inconsistent bin counts")
    return edges[1:-1], counts / counts.sum()


def reference_sample(profile: dict) -> np.ndarray:
    """The profile's reference sample, finite values only, sorted."""
    sample = np.asarray(profile.get("sample") or [], dtype=float)
    return np.sort(sample[np.isfinite(sample)])


def distance_scale(profile: dict) -> float:
    """What the Wasserstein distance is divided by: the baseline's standard deviation (1 for a
    constant baseline: a distance in the column's units)."""
    std = float(profile.get("std") or 0.0)
    return std if std > 0 else 1.0


def _numeric_drift(name: str, profile: dict, series: pd.Series, s: DriftSettings) -> ColumnDrift:
    values = numeric_values(name, series)
    current = np.sort(values[np.isfinite(values)])
    n = current.size
    if n == 0 or len(profile["edges"]) == 0:
        return one_side_empty(name, "numeric", profile, n, values.size)
    interior, _ = numeric_cells(name, profile)
    sample = reference_sample(profile)
    test = statistic = p = None
    if sample.size:
        if uses_test(n, s):
            result = stats.ks_2samp(sample, current)
            test, statistic, p = "ks", float(result.statistic), float(result.pvalue)
        else:
            statistic = _wasserstein_sorted(sample, current) / distance_scale(profile)
            test = "wasserstein"
    # number of values <= each interior edge; differences are the (left-open) bin counts
    at_or_below = np.searchsorted(current, interior, side="right")
    return numeric_column(
        name,
        profile,
        s,
        rows=n,
        total=values.size,
        at_or_below=at_or_below,
        test=test,
        statistic=statistic,
        p_value=p,
    )


def numeric_column(
    name: str,
    profile: dict,
    s: DriftSettings,
    *,
    rows: int,
    total: int,
    at_or_below: Any,
    test: str | None,
    statistic: float | None,
    p_value: float | None,
) -> ColumnDrift:
    """A numeric column's result from its counts: ``rows`` present of ``total`` current values,
    ``at_or_below`` of each interior edge (``numeric_cells``), and the test (``ks``, with its
    p-value) or distance (``wasserstein``, scaled) already computed, or None without a sample."""
    n, p = int(rows), p_value
    edges = np.asarray(profile["edges"], dtype=float)
    _, expected = numeric_cells(name, profile)
    at_or_below = np.asarray(at_or_below, dtype=np.int64)
    actual = np.diff(np.concatenate(([0], at_or_below, [n]))) / n
    value = psi(expected, actual, epsilon=s.epsilon)
    threshold, drifted = None, False
    if test == "ks":
        threshold, drifted = s.p_value, p < s.p_value
    elif test == "wasserstein":
        threshold, drifted = s.distance_threshold, statistic >= s.distance_threshold
    base_missing = float(profile.get("missing_rate", 0.0))
    cur_missing = 1.0 - n / total
    return ColumnDrift(
        column=name,
        kind="numeric",
        rows=int(n),
        psi=value,
        status=_status(value, s),
        test=test,
        statistic=statistic,
        p_value=p,
        threshold=threshold,
        drift_detected=bool(drifted),
        missing_rate_baseline=base_missing,
        missing_rate_current=cur_missing,
        missing_rate_change=cur_missing - base_missing,
        cells=edges.tolist(),
        expected=expected.tolist(),
        actual=actual.tolist(),
    )


def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """W1 between two sorted samples: integral of |F_u - F_v|, by a linear merge (no re-sort)."""
    pos = np.searchsorted(v, u)
    merged = np.insert(v, pos, u)
    from_u = np.zeros(merged.size, dtype=bool)
    from_u[pos + np.arange(u.size)] = True
    cu = np.cumsum(from_u)[:-1]
    cv = np.arange(1, merged.size) - cu
    # tied values give zero-width steps, so ties need no special handling
    return float(np.sum(np.abs(cu / u.size - cv / v.size) * np.diff(merged)))


def category_counts(series: pd.Series) -> pd.Series:
    """Present values counted by their text (the profile's keys; 1 and "1" are one category),
    sorted by text: counts of parts of a column add up to the whole column's."""
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    counts = counts.groupby(counts.index.map(str), sort=False).sum()
    return counts.sort_index(kind="mergesort")


def _categorical_drift(
    name: str, profile: dict, series: pd.Series, s: DriftSettings
) -> ColumnDrift:
    return categorical_column(name, profile, s, category_counts(series), len(series))


def categorical_column(
    name: str, profile: dict, s: DriftSettings, counts: pd.Series, total: int
) -> ColumnDrift:
    """A categorical column's result from ``counts`` (``category_counts``, text -> count, sorted
    by text) of ``total`` current values."""
    n = int(counts.sum())
    frequencies = profile["frequencies"]
    if n == 0 or sum(frequencies.values()) <= 0:
        return one_side_empty(name, "categorical", profile, n, total)
    named = [k for k in frequencies if k != OTHER]
    ref = np.array([frequencies[k] for k in named], dtype=float)
    ref_other = float(frequencies.get(OTHER, 0))
    cur = counts.reindex(named, fill_value=0).to_numpy(dtype=float)
    # largest first; equal counts in text order, so the named ones do not depend on data order
    unseen = counts[~counts.index.isin(named)].sort_values(ascending=False, kind="mergesort")
    cells = list(named)
    # one pooled cell for categories outside the baseline's named ones (its "__other__")
    if ref_other > 0 or unseen.size:
        cells.append(OTHER)
        ref = np.append(ref, ref_other)
        cur = np.append(cur, float(unseen.sum()))
    expected = ref / ref.sum()
    actual = cur / n
    value = psi(expected, actual, epsilon=s.epsilon)

    if uses_test(n, s):
        # expected counts from epsilon-clipped proportions, renormalised to sum to n
        clipped = np.maximum(expected, s.epsilon)
        f_exp = clipped / clipped.sum() * n
        statistic = float(np.sum((cur - f_exp) ** 2 / f_exp))
        dof = len(cells) - 1
        p = float(stats.chi2.sf(statistic, dof)) if dof > 0 else 1.0
        test, threshold, drifted = "chi-square", s.p_value, p < s.p_value
    else:
        test, p, threshold = "jensen-shannon", None, s.distance_threshold
        statistic = _jensen_shannon(expected, actual)
        drifted = statistic >= s.distance_threshold
    base_missing = float(profile.get("missing_rate", 0.0))
    cur_missing = 1.0 - n / total
    listed = unseen.iloc[:UNSEEN_LISTED]
    return ColumnDrift(
        column=name,
        kind="categorical",
        rows=n,
        psi=value,
        status=_status(value, s),
        test=test,
        statistic=statistic,
        p_value=p,
        threshold=threshold,
        drift_detected=bool(drifted),
        missing_rate_baseline=base_missing,
        missing_rate_current=cur_missing,
        missing_rate_change=cur_missing - base_missing,
        cells=cells,
        expected=expected.tolist(),
        actual=actual.tolist(),
        unseen={str(k): float(v) / n for k, v in listed.items()},
        unseen_categories=int(unseen.size),
        unseen_share=float(unseen.sum()) / n,
    )


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (0 identical, 1 disjoint); 0 * log 0 taken as 0."""
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))
