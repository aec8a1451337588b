"""The platform's validation of one model on one labelled table: the evidence an approver reads.

Pure: a loaded model and a DataFrame in, metrics, detailed reports and threshold breaches out.
The Workspace runs it as the platform and records the result against the artifact's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput

DEFAULT_CUTOFF = 0.5
#: template threshold name -> (metric key in the flat metrics, "min" or "max")
METRIC_THRESHOLDS = {
    "auc_min": ("roc_auc", "min"),
    "ks_min": ("ks", "min"),
    "r2_min": ("r2", "min"),
    "rmse_max": ("rmse", "max"),
}


@dataclass(frozen=True)
class ValidationResult:
    metrics: dict[str, float]
    details: dict[str, Any]
    breaches: list[str]


def cutoff_of(model: Any) -> float:
    """The approval cutoff on the score: the artifact's own, else 0.5."""
    return float((model.metadata or {}).get("threshold", DEFAULT_CUTOFF))


def run_validation(
    model: Any,
    data: pd.DataFrame,
    *,
    baseline_profile: dict[str, Any] | None,
    protected: Sequence[str] = (),
    thresholds: dict[str, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> ValidationResult:
    """Score ``data`` with ``model`` and gather performance, fairness and drift evidence.

    ``protected`` columns present in ``data`` are fairness-tested on the model's decisions
    (score at or above the cutoff = favourable); ``baseline_profile`` (the training data's
    profile) is compared with ``data`` for drift. ``thresholds`` are the template's
    (``auc_min``, ``ks_min``, ``adverse_impact_ratio_min``, ``psi_alert`` ...); each one missed is
    a breach, named in words.
    """
    from .evaluate import classification_report, regression_report
    from .profile import profile

    thresholds = dict(thresholds or {})
    target = model.target
    if target not in data.columns:
        raise InvalidInput(f"cannot validate: the data has no target column {target!r}")
    if data.empty:
        raise InvalidInput("cannot validate on an empty table")
    y = data[target].to_numpy()
    details: dict[str, Any] = {"rows": len(data)}
    breaches: list[str] = []
    if model.problem_type in ("binary", "multiclass"):
        cutoff = cutoff_of(model)
        if model.problem_type == "binary":
            scores = model.score(data)
            report = classification_report(
                y,
                scores,
                classes=model.classes,
                positive=model.classes[1],
                threshold=cutoff,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
            details["fairness"] = _fairness(model, data, scores, protected, thresholds, breaches)
            details["score_profile"] = profile(pd.DataFrame({"score": scores}))
        else:
            report = classification_report(
                y,
                model.predict_proba(data),
                classes=model.classes,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        details["cutoff"] = cutoff
    elif model.problem_type == "regression":
        report = regression_report(y, model.predict(data), n_bootstrap=n_bootstrap, seed=seed)
    else:
        raise InvalidInput(f"cannot validate a {model.problem_type!r} model on labelled data")
    metrics = report.flat()
    details["performance"] = report.to_dict()
    for name, (metric, direction) in METRIC_THRESHOLDS.items():
        if name in thresholds and metric in metrics:
            limit, value = thresholds[name], metrics[metric]
            if (value < limit) if direction == "min" else (value > limit):
                word = "below the minimum" if direction == "min" else "above the maximum"
                breaches.append(f"{metric} {value:.4f} is {word} {limit}")
    if baseline_profile:
        details["drift"] = _drift(model, data, baseline_profile, thresholds, breaches)
    return ValidationResult(metrics, details, breaches)


def fairness_of(
    model: Any,
    data: pd.DataFrame,
    protected: Sequence[str],
    thresholds: dict[str, float],
    scores: Any = None,
) -> Any:
    """The fairness report of a binary model's decisions on labelled ``data``, or None when no
    protected column is present. Favourable = scored at or above the cutoff."""
    from .fairness import fairness_report

    present = [c for c in protected if c in data.columns]
    if not present:
        return None
    if model.target not in data.columns:
        raise InvalidInput(f"cannot test fairness: the data has no target column {model.target!r}")
    scores = model.score(data) if scores is None else scores
    return fairness_report(
        data[model.target].to_numpy() == model.classes[1],
        (np.asarray(scores) >= cutoff_of(model)).astype(int),
        scores,
        data[present].reset_index(drop=True),
        favourable=1,
        favourable_outcome=True,
        air_threshold=float(thresholds.get("adverse_impact_ratio_min", 0.8)),
    )


def drift_of(
    model: Any, data: pd.DataFrame, baseline: dict[str, Any], thresholds: dict[str, float]
) -> Any:
    """Drift of the model's input columns in ``data`` against the training ``baseline`` profile."""
    from .drift import drift_report

    columns = [c for c in model.input_columns if c in baseline.get("columns", {})]
    return drift_report(
        baseline,
        data[columns],
        columns=columns,
        psi_warn=float(thresholds.get("psi_warning", 0.10)),
        psi_alert=float(thresholds.get("psi_alert", 0.25)),
    )


def _fairness(model, data, scores, protected, thresholds, breaches) -> dict | None:
    report = fairness_of(model, data, protected, thresholds, scores)
    if report is None:
        return None
    for attribute, groups in report.flagged.items():
        breaches.append(
            f"adverse impact on {attribute}: {', '.join(groups)} below the "
            f"{report.air_threshold} ratio and statistically significant"
        )
    return report.to_dict()


def _drift(model, data, baseline, thresholds, breaches) -> dict:
    result = drift_of(model, data, baseline, thresholds).to_dict()
    alerts = [c for c, r in result.get("columns", {}).items() if r.get("status") == "alert"]
    if alerts:
        breaches.append(f"population drift (PSI alert) in {', '.join(alerts)}")
    return result
