"""Measure one window of recorded decisions against a model's references and thresholds.

Pure: a table of the window's decisions in, a list of :class:`Measurement` out — one point of
each time series. The four checks:

- ``data_drift``: PSI (and the test or distance ``ml/drift.py`` picks by sample size) of each
  recorded input column against the training data's profile, alerting at ``psi_alert``; plus the
  share of columns at alert (not alerted on by itself).
- ``prediction_drift``: PSI of the recorded scores against the version's score profile on its
  validation data, alerting at ``psi_alert``; plus the approval rate and mean score.
- ``performance`` (decisions whose outcome has arrived; ``ml/performance.py``): AUC, accuracy,
  precision, recall, F1, Brier score and expected calibration error overall, alerting at
  ``auc_min``, ``max_performance_drop`` (fall of AUC from the validated value) and any
  ``*_min``/``*_max`` override; the same metrics by segment and by protected group, stored but
  not alerted on (small groups are noisy; the fairness review reads them).
- ``health``: decisions in the window (``traffic_min``), latency p50/p95/mean
  (``latency_p95_ms_max``). Refused requests are never recorded (the gateway answers 4xx before
  scoring), so error rates are the gateway's ``/metrics`` counters, not a stored series.

Drift and health are judged only with at least ``min_rows`` decisions, performance with at least
``min_outcomes`` outcomes: fewer are measured and stored, never alerted on.

An outcome is the value attached to a decision: the label itself, or an object holding the label
under ``label`` (or ``outcome``) and, beside it, attributes that are not model inputs — the
protected attributes a lender keeps apart from the model (``{"label": 1, "sex": "female"}``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput

CHECKS: tuple[str, ...] = ("data_drift", "prediction_drift", "performance", "health")
_FEATURE_LENGTH = 200  # monitor_results.feature
_SLICE_METRICS = ("auc", "accuracy", "precision", "recall", "f1", "ece")
#: threshold name -> (performance metric, direction) for the overall performance alerts
_PERFORMANCE_THRESHOLDS = {
    "auc_min": ("auc", "min"),
    "accuracy_min": ("accuracy", "min"),
    "precision_min": ("precision", "min"),
    "recall_min": ("recall", "min"),
    "f1_min": ("f1", "min"),
    "ece_max": ("ece", "max"),
    "brier_max": ("brier", "max"),
}


@dataclass(frozen=True)
class Measurement:
    """One point of a time series. ``direction``: ``at`` alerts when value >= threshold (PSI),
    ``max`` when value > threshold, ``min`` when value < threshold."""

    kind: str
    metric: str
    scope: str  # overall | feature | segment | group
    feature: str  # "" overall; a column; "column=segment"
    value: float | None
    threshold: float | None
    direction: str | None
    breached: bool
    rows: int
    details: dict[str, Any] = field(default_factory=dict)
    judged: bool = True  # enough rows/outcomes to alert on (and to clear an alert)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    """What one window is compared with: the served version's references."""

    problem_type: str | None
    input_columns: tuple[str, ...]
    baseline: dict[str, Any] | None  # training-data profile (nexml-profile/1)
    score_baseline: dict[str, Any] | None  # profile column of the validation scores
    positive_label: Any = None
    negative_label: Any = None
    cutoff: float | None = None
    validated_auc: float | None = None
    protected: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()


@dataclass
class WindowData:
    """The window's decisions: inputs (one row each), scores, latencies, outcomes (None where
    none arrived yet)."""

    inputs: pd.DataFrame
    scores: list[float | None]
    latency_ms: list[float | None]
    outcomes: list[Any]

    def __post_init__(self) -> None:
        n = len(self.inputs)
        if not (len(self.scores) == len(self.latency_ms) == len(self.outcomes) == n):
            raise InvalidInput(
                "window data: inputs, scores, latencies and outcomes differ in length"
            )


def check_checks(checks: Any) -> tuple[str, ...]:
    """Clean list of check names; InvalidInput naming an unknown one."""
    if isinstance(checks, str):
        checks = [c.strip() for c in checks.split(",") if c.strip()]
    chosen = tuple(dict.fromkeys(checks or ()))
    unknown = [c for c in chosen if c not in CHECKS]
    if unknown or not chosen:
        raise InvalidInput(
            f"unknown monitor check(s) {', '.join(map(repr, unknown)) or '(none given)'}: choose "
            f"from {', '.join(CHECKS)}"
        )
    return chosen


def split_outcome(value: Any) -> tuple[Any, dict[str, Any]]:
    """(label, attributes) of an attached outcome (see the module docstring)."""
    if isinstance(value, dict):
        label = value.get("label", value.get("outcome"))
        return label, {k: v for k, v in value.items() if k not in ("label", "outcome")}
    return value, {}


def measure(
    checks: tuple[str, ...], data: WindowData, ref: Reference, thresholds: dict[str, float]
) -> list[Measurement]:
    """Every measurement of one window (module docstring), in check order."""
    out: list[Measurement] = []
    rows = len(data.inputs)
    enough = rows >= thresholds["min_rows"]
    if "health" in checks:
        out += _health(data, thresholds, enough)
    if rows and "data_drift" in checks:
        out += _data_drift(data, ref, thresholds, enough)
    if rows and "prediction_drift" in checks:
        out += _prediction_drift(data, ref, thresholds, enough)
    if rows and "performance" in checks:
        out += _performance(data, ref, thresholds)
    return out


# --- the checks -------------------------------------------------------------------------------


def _judge(value: float | None, threshold: float | None, direction: str, judged: bool) -> bool:
    if not judged or value is None or threshold is None:
        return False
    if direction == "at":
        return value >= threshold
    return value > threshold if direction == "max" else value < threshold


def _point(kind, metric, scope, feature, value, threshold, direction, rows, judged, **details):  # type: ignore[no-untyped-def]
    value = None if value is None or not np.isfinite(value) else float(value)
    return Measurement(
        kind=kind,
        metric=metric,
        scope=scope,
        feature=str(feature)[:_FEATURE_LENGTH],
        value=value,
        threshold=None if threshold is None else float(threshold),
        direction=direction if threshold is not None else None,
        breached=_judge(value, threshold, direction, judged),
        rows=int(rows),
        details={k: v for k, v in details.items() if v is not None},
        judged=bool(judged and value is not None and threshold is not None),
    )


def _health(data: WindowData, th: dict[str, float], enough: bool) -> list[Measurement]:
    n = len(data.inputs)
    latency = np.array([v for v in data.latency_ms if v is not None], dtype=float)
    out = [
        # a traffic drop is judged on any complete window: few decisions is the symptom
        _point("health", "requests", "overall", "", n, th.get("traffic_min"), "min", n, True)
    ]
    if latency.size:
        p50, p95 = np.percentile(latency, [50, 95])
        out += [
            _point("health", "latency_p50_ms", "overall", "", p50, None, "max", latency.size,
                   enough),
            _point("health", "latency_p95_ms", "overall", "", p95, th.get("latency_p95_ms_max"),
                   "max", latency.size, enough),
            _point("health", "latency_mean_ms", "overall", "", latency.mean(), None, "max",
                   latency.size, enough),
        ]
    return out


def _data_drift(
    data: WindowData, ref: Reference, th: dict[str, float], enough: bool
) -> list[Measurement]:
    from ..ml.drift import drift_report

    profiled = (ref.baseline or {}).get("columns") or {}
    columns = [c for c in ref.input_columns if c in profiled and c in data.inputs.columns]
    if not columns:
        return []
    report = drift_report(
        ref.baseline,  # type: ignore[arg-type]
        data.inputs[columns],
        columns=columns,
        psi_warn=th["psi_warning"],
        psi_alert=th["psi_alert"],
    )
    out = []
    for name, col in report.columns.items():
        out.append(
            _point("data_drift", "psi", "feature", name, col.psi, th["psi_alert"], "at", col.rows,
                   enough, status=col.status, test=col.test, statistic=col.statistic,
                   p_value=col.p_value, drift_detected=col.drift_detected,
                   missing_rate_change=col.missing_rate_change, note=col.note)
        )
    out.append(
        _point("data_drift", "drift_share", "overall", "", report.drift_share, None, "max",
               report.rows, enough, columns=len(report.columns), alerts=report.alerts)
    )
    return out


def _prediction_drift(
    data: WindowData, ref: Reference, th: dict[str, float], enough: bool
) -> list[Measurement]:
    from ..ml.drift import score_drift

    scores = np.array([np.nan if v is None else v for v in data.scores], dtype=float)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        return []
    out = [_point("prediction_drift", "mean_score", "overall", "score", scores.mean(), None,
                  "max", scores.size, enough)]
    if ref.cutoff is not None and ref.problem_type == "binary":
        out.append(_point("prediction_drift", "approval_rate", "overall", "score",
                          float((scores >= ref.cutoff).mean()), None, "max", scores.size, enough,
                          cutoff=ref.cutoff))
    if ref.score_baseline:
        col = score_drift(
            ref.score_baseline, scores, psi_warn=th["psi_warning"], psi_alert=th["psi_alert"]
        )
        out.append(
            _point("prediction_drift", "score_psi", "overall", "score", col.psi,
                   th["psi_alert"], "at", col.rows, enough, status=col.status, test=col.test,
                   statistic=col.statistic, p_value=col.p_value)
        )
    return out


def labelled(data: WindowData, ref: Reference) -> tuple[np.ndarray, pd.DataFrame, int]:
    """Indices of the decisions with a usable outcome, the outcomes' attribute table (aligned
    with those indices, column ``__label__`` holding the label) and how many outcomes did not
    name one of the model's classes."""
    keep, labels, attrs, unusable = [], [], [], 0
    classes = None
    if ref.problem_type == "binary":
        classes = {str(ref.positive_label): 1, str(ref.negative_label): 0}
    for i, value in enumerate(data.outcomes):
        if value is None:
            continue
        label, extra = split_outcome(value)
        if classes is not None:
            if isinstance(label, bool):
                label = int(label)
            code = classes.get(str(label))
            if code is None:
                unusable += 1
                continue
            label = code
        elif label is None or isinstance(label, bool) or not isinstance(label, int | float):
            unusable += 1
            continue
        keep.append(i)
        labels.append(label)
        attrs.append(extra)
    table = pd.DataFrame(attrs, index=range(len(keep)))
    table["__label__"] = labels
    return np.asarray(keep, dtype=int), table, unusable


def _performance(data: WindowData, ref: Reference, th: dict[str, float]) -> list[Measurement]:
    from ..ml.performance import classification_performance, regression_performance

    if ref.problem_type not in ("binary", "regression"):
        return []
    index, table, unusable = labelled(data, ref)
    scores = np.array([np.nan if v is None else v for v in data.scores], dtype=float)
    if index.size:
        finite = np.isfinite(scores[index])
        index, table = index[finite], table[finite].reset_index(drop=True)
    n = int(index.size)
    out = [_point("performance", "outcomes", "overall", "", n, None, "min", n, True,
                  unusable=unusable or None)]
    if n == 0:
        return out
    judged = n >= th["min_outcomes"]
    inputs = data.inputs.iloc[index].reset_index(drop=True)

    def column(name: str) -> pd.Series | None:
        if name in inputs.columns:
            return inputs[name]
        if name in table.columns and table[name].notna().any():
            return table[name]
        return None

    protected = {p: s for p in ref.protected if (s := column(p)) is not None}
    segments = {
        c: s for c in ref.segments if c not in protected and (s := column(c)) is not None
    }
    if ref.problem_type == "binary":
        result = classification_performance(
            table["__label__"].to_numpy(dtype=int),
            scores[index],
            positive_label=1,
            threshold=ref.cutoff if ref.cutoff is not None else 0.5,
            segments=segments or None,
            protected=protected or None,
        )
        names = ("auc", "accuracy", "precision", "recall", "f1", "brier", "ece")
    else:
        result = regression_performance(
            table["__label__"].to_numpy(dtype=float), scores[index],
            segments=segments or None, protected=protected or None,
        )
        names = ("mae", "rmse", "r2", "bias")
    overall = result["overall"]
    limits = {
        metric: (th.get(name), direction)
        for name, (metric, direction) in _PERFORMANCE_THRESHOLDS.items()
    }
    for metric in names:
        threshold, direction = limits.get(metric, (None, "max"))
        extra = {"calibration": overall.get("calibration")} if metric == "ece" else {}
        out.append(_point("performance", metric, "overall", "", overall.get(metric), threshold,
                          direction, n, judged, **extra))
    auc = overall.get("auc")
    if ref.validated_auc is not None and auc is not None:
        out.append(_point("performance", "auc_drop", "overall", "", ref.validated_auc - auc,
                          th.get("max_performance_drop"), "max", n, judged,
                          validated_auc=ref.validated_auc))
    if overall.get("notes"):
        out[0] = _point("performance", "outcomes", "overall", "", n, None, "min", n, True,
                        unusable=unusable or None, notes=overall["notes"])
    for scope, key in (("segment", "by_segment"), ("group", "by_group")):
        for name, slices in (result.get(key) or {}).items():
            for label, metrics in slices.items():
                for metric in names if ref.problem_type == "regression" else _SLICE_METRICS:
                    out.append(_point("performance", metric, scope, f"{name}={label}",
                                      metrics.get(metric), None, "max", metrics.get("n", 0),
                                      False))
    return out
