"""Champion against challenger on the same holdout: metric deltas and the recommendation.

Pure: two validations' metrics and statuses in, a :class:`Recommendation` out. The comparison
report (``notebooks/comparison.ipynb``) shows it and the platform records it on the challenger
(``Workspace`` retraining); a person decides. The rule, in order:

1. the challenger missed a template threshold (its validation failed): keep the champion;
2. the challenger beats the champion on the primary metric by at least ``min_improvement``:
   promote;
3. the champion itself now misses a template threshold on the new data (its performance, or
   the drift of the data away from what it learned from) and the challenger, which does not, is
   no worse than ``min_improvement`` on the primary metric: promote;
4. otherwise keep the champion (no material improvement is not a reason to change a model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

#: The metric a recommendation rests on, per problem type.
PRIMARY = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}
#: Metrics where lower is better; every other compared metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
#: Metrics shown side by side, per problem type (those both validations have).
COMPARED = {
    "binary": ("roc_auc", "gini", "ks", "accuracy", "precision", "recall", "f1", "brier",
               "log_loss"),
    "multiclass": ("accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
#: How much better (in the primary metric's units) a challenger must be to be promoted.
DEFAULT_MIN_IMPROVEMENT = 0.005

PROMOTE = "promote"
KEEP = "keep champion"


@dataclass(frozen=True)
class Recommendation:
    """``decision`` is ``promote`` or ``keep champion``; ``deltas`` are challenger minus
    champion per metric (``improved`` says which way is better for each)."""

    decision: str
    reason: str
    primary: str
    champion: str
    challenger: str
    deltas: dict[str, dict[str, Any]]
    min_improvement: float
    champion_status: str
    challenger_status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def deltas(
    champion: dict[str, Any], challenger: dict[str, Any], problem_type: str
) -> dict[str, dict[str, Any]]:
    """Per compared metric both have: champion, challenger, delta (challenger − champion) and
    whether the challenger is better (``improved``; None when equal)."""
    out: dict[str, dict[str, Any]] = {}
    for metric in COMPARED.get(problem_type, ()):
        a, b = _number(champion.get(metric)), _number(challenger.get(metric))
        if a is None or b is None:
            continue
        delta = b - a
        better = -delta if metric in LOWER_IS_BETTER else delta
        out[metric] = {
            "champion": a,
            "challenger": b,
            "delta": delta,
            "improved": None if delta == 0 else better > 0,
            "lower_is_better": metric in LOWER_IS_BETTER,
        }
    return out


def recommend(
    *,
    champion_ref: str,
    challenger_ref: str,
    problem_type: str,
    champion_metrics: dict[str, Any],
    challenger_metrics: dict[str, Any],
    champion_status: str,
    challenger_status: str,
    min_improvement: float = DEFAULT_MIN_IMPROVEMENT,
) -> Recommendation:
    """The recommendation for a challenger validated beside its champion on one holdout."""
    primary = PRIMARY.get(problem_type)
    table = deltas(champion_metrics, challenger_metrics, problem_type)

    def made(decision: str, reason: str) -> Recommendation:
        return Recommendation(decision, reason, primary or "", champion_ref, challenger_ref,
                              table, float(min_improvement), champion_status, challenger_status)

    if challenger_status != "passed":
        return made(KEEP, f"{challenger_ref} missed a template threshold on the holdout")
    if primary is None or primary not in table:
        return made(KEEP, f"no {primary or 'primary metric'} to compare for a {problem_type} "
                          "model")
    row = table[primary]
    gain = -row["delta"] if row["lower_is_better"] else row["delta"]
    shown = f"{primary} {row['champion']:.4f} → {row['challenger']:.4f} ({row['delta']:+.4f})"
    if gain >= min_improvement:
        return made(PROMOTE, f"{challenger_ref} is better on the same holdout: {shown}, at least "
                             f"{min_improvement:g} better")
    if champion_status != "passed" and gain > -min_improvement:
        return made(PROMOTE, f"{champion_ref} now misses a template threshold and "
                             f"{challenger_ref} does not, and is no worse: {shown}")
    if gain <= -min_improvement:
        return made(KEEP, f"{challenger_ref} is worse on the same holdout: {shown}")
    return made(KEEP, f"{challenger_ref} is not materially better on the same holdout: {shown}, "
                      f"less than {min_improvement:g} better")
