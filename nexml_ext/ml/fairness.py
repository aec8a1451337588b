"""Fairness of decisions and scores across protected groups (fair-lending style).

For each protected attribute, every group is compared with a control group (default: the most
favoured, i.e. highest selection rate). Selection means receiving the favourable decision.

- adverse impact ratio (AIR) = selection rate of the group / selection rate of the control;
- its p-value tests the 2×2 table (group vs control × selected vs not): Fisher's exact test
  (two-sided) when any expected count is below 5, otherwise Pearson's chi-square without
  continuity correction;
- a group is flagged when AIR < ``air_threshold`` and p < ``alpha``;
- SMD = (mean score of group − mean score of control) / pooled standard deviation;
- marginal effect = selection-rate difference from the control, in percentage points.

Per-group selection rate, TPR and FPR are computed through fairlearn's ``MetricFrame`` (TPR/FPR
are NaN for a group with no actual favourable / unfavourable outcomes; AUC likewise when a group
holds one outcome class). Demographic parity and equalized odds come from ``fairlearn.metrics``,
which count a missing outcome class in a group as a rate of 0. Continuous protected attributes
(numeric with more than ``max_categories`` distinct values, such as age) are cut into bands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    selection_rate,
)
from scipy.stats import chi2_contingency, fisher_exact
from scipy.stats.contingency import expected_freq
from sklearn.metrics import roc_auc_score

from ..errors import InvalidInput
from .evaluate import jsonable

AGE_BANDS = (25, 35, 45, 55, 65)
MISSING = "missing"


def band_labels(edges: Sequence[float] = AGE_BANDS) -> list[str]:
    """Labels of the bands cut at ``edges``: (25, 35, 65) gives ``<25``, ``25-34``, ``35-64``,
    ``65+`` for integer edges, ``25-<35`` style otherwise. Raises InvalidInput unless the edges
    increase.
    """
    edges = list(edges)
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise InvalidInput(f"band edges must be a non-empty increasing sequence, got {edges}")
    whole = all(float(e).is_integer() for e in edges)

    def fmt(e: float) -> str:
        return str(int(e)) if whole else f"{e:g}"

    labels = [f"<{fmt(edges[0])}"]
    for lo, hi in zip(edges, edges[1:], strict=False):
        labels.append(f"{fmt(lo)}-{fmt(hi - 1)}" if whole else f"{fmt(lo)}-<{fmt(hi)}")
    labels.append(f"{fmt(edges[-1])}+")
    return labels


def band(values: Any, edges: Sequence[float] = AGE_BANDS) -> pd.Series:
    """Cut numbers into the bands of ``band_labels(edges)``; each band holds its lower edge and
    missing values become ``"missing"``. Raises InvalidInput unless the edges increase.
    """
    labels = band_labels(edges)
    numbers = pd.Series(np.asarray(values, dtype=float))
    cut = pd.cut(numbers, [-np.inf, *edges, np.inf], right=False, labels=labels)
    return cut.astype(object).where(cut.notna(), MISSING)


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate(int((y_pred[y_true == 1] == 1).sum()), int((y_true == 1).sum()))


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate(int((y_pred[y_true == 0] == 1).sum()), int((y_true == 0).sum()))


def _auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return math.nan
    return float(roc_auc_score(y_true, scores))


def _mean(_: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(scores))


def _std(_: np.ndarray, scores: np.ndarray) -> float:
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan


def adverse_impact_test(selected: int, n: int, control_selected: int, control_n: int) -> dict:
    """AIR of a group against the control and the p-value of the 2×2 table.

    Fisher's exact test when any expected count is below 5, else chi-square without continuity
    correction. Returns ``air`` (NaN if the control selects nobody), ``p_value`` and ``test``.
    """
    table = np.array([[selected, n - selected], [control_selected, control_n - control_selected]])
    if (table < 0).any() or n == 0 or control_n == 0:
        raise InvalidInput(f"invalid 2x2 selection table {table.tolist()}")
    control_rate = control_selected / control_n
    air = (selected / n) / control_rate if control_rate > 0 else math.nan
    if (expected_freq(table) < 5).any():
        return {"air": air, "p_value": float(fisher_exact(table).pvalue), "test": "fisher"}
    p_value = chi2_contingency(table, correction=False).pvalue
    return {"air": air, "p_value": float(p_value), "test": "chi2"}


def _smd(mean: float, sd: float, n: int, c_mean: float, c_sd: float, c_n: int) -> float:
    if n < 2 or c_n < 2:
        return math.nan
    pooled = math.sqrt(((n - 1) * sd**2 + (c_n - 1) * c_sd**2) / (n + c_n - 2))
    return (mean - c_mean) / pooled if pooled > 0 else math.nan


@dataclass(frozen=True)
class AttributeFairness:
    """The fairness of one protected attribute: a row per group and the group-gap summaries."""

    attribute: str
    control: str
    banded: bool
    groups: list[dict[str, Any]]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float

    @property
    def flagged(self) -> list[str]:
        return [g["group"] for g in self.groups if g["flagged"]]

    def table(self) -> pd.DataFrame:
        """The group rows as a DataFrame indexed by group."""
        return pd.DataFrame(self.groups).set_index("group")

    def to_dict(self) -> dict[str, Any]:
        return jsonable({**self.__dict__, "flagged": self.flagged})


@dataclass(frozen=True)
class FairnessReport:
    """Fairness of a model's decisions across every protected attribute."""

    n: int
    favourable: Any
    air_threshold: float
    alpha: float
    attributes: dict[str, AttributeFairness]

    @property
    def flagged(self) -> dict[str, list[str]]:
        """Flagged groups per attribute (attributes without flags are left out)."""
        return {a: f.flagged for a, f in self.attributes.items() if f.flagged}

    def summary(self) -> pd.DataFrame:
        """One row per attribute: control, lowest AIR and its group, parity gaps, flags."""
        rows = []
        for name, f in self.attributes.items():
            others = [g for g in f.groups if g["group"] != f.control and not math.isnan(g["air"])]
            worst = min(others, key=lambda g: g["air"]) if others else None
            rows.append(
                {
                    "attribute": name,
                    "control": f.control,
                    "lowest_air_group": worst["group"] if worst else None,
                    "lowest_air": worst["air"] if worst else math.nan,
                    "dp_difference": f.demographic_parity_difference,
                    "eo_difference": f.equalized_odds_difference,
                    "flagged": ", ".join(f.flagged),
                }
            )
        return pd.DataFrame(rows).set_index("attribute")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "n": self.n,
                "favourable": self.favourable,
                "air_threshold": self.air_threshold,
                "alpha": self.alpha,
                "flagged": self.flagged,
                "attributes": {k: v.to_dict() for k, v in self.attributes.items()},
            }
        )


def fairness_report(
    y_true: Any,
    y_pred_or_decision: Any,
    scores: Any,
    sensitive: pd.DataFrame | pd.Series,
    *,
    favourable: Any = 1,
    favourable_outcome: Any = None,
    control: Mapping[str, str] | None = None,
    air_threshold: float = 0.8,
    alpha: float = 0.05,
    age_bands: Sequence[float] | Mapping[str, Sequence[float]] = AGE_BANDS,
    max_categories: int = 10,
) -> FairnessReport:
    """Compare groups of each column of ``sensitive`` (aligned by position with the arrays).

    ``y_pred_or_decision`` are the decisions, ``favourable`` marking approval; ``y_true`` are
    the actual outcomes, ``favourable_outcome`` (default: ``favourable``) marking the good one;
    ``scores`` (higher = more favourable, or
    None) feed AUC, mean score and SMD. ``control`` names the control group per attribute (as
    the group label string, e.g. ``"male"`` or ``"35-44"``). ``age_bands`` are the band edges
    for continuous attributes, or a mapping attribute -> edges. Raises InvalidInput on empty
    or unequal-length input, non-binary decisions, a favourable value absent from its array,
    or an unknown attribute / control group.
    """
    frame = sensitive.to_frame() if isinstance(sensitive, pd.Series) else sensitive
    if not isinstance(frame, pd.DataFrame) or frame.shape[1] == 0:
        raise InvalidInput("fairness needs a DataFrame with one column per protected attribute")
    arrays = [y_true, y_pred_or_decision, frame] + ([] if scores is None else [scores])
    lengths = sorted({len(a) for a in arrays})
    if len(lengths) > 1:
        raise InvalidInput(f"cannot assess fairness: inputs differ in length {lengths}")
    if lengths[0] == 0:
        raise InvalidInput("cannot assess fairness: no rows")
    y_raw, d_raw = np.asarray(y_true), np.asarray(y_pred_or_decision)
    if len(pd.unique(d_raw)) > 2:
        raise InvalidInput(
            "cannot assess fairness: decisions must take two values (pass scores separately)"
        )
    good = favourable if favourable_outcome is None else favourable_outcome
    if not (d_raw == favourable).any():
        raise InvalidInput(
            f"cannot assess fairness: favourable value {favourable!r} is not among the decisions"
        )
    if not (y_raw == good).any():
        raise InvalidInput(
            f"cannot assess fairness: favourable outcome {good!r} is not among y_true"
        )
    y = (y_raw == good).astype(int)
    d = (d_raw == favourable).astype(int)
    s = None
    if scores is not None:
        s = np.asarray(scores, dtype=float)
        if not np.isfinite(s).all():
            raise InvalidInput("cannot assess fairness: scores must be finite")
    control = dict(control or {})
    unknown = set(control) - set(frame.columns)
    if unknown:
        raise InvalidInput(f"control names unknown attributes {sorted(unknown)}")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha}")
    attributes = {}
    for name in frame.columns:
        groups, order = _groups(frame[name], age_bands, name, max_categories)
        attributes[str(name)] = _attribute(
            str(name), groups, order, y, d, s, control.get(name), air_threshold, alpha
        )
    return FairnessReport(len(y), favourable, air_threshold, alpha, attributes)


def _groups(column: pd.Series, age_bands: Any, name: Any, max_categories: int):
    """Group labels (strings) of a protected column, and the band order if it was banded."""
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric and column.nunique() > max_categories:
        edges = age_bands.get(name, AGE_BANDS) if isinstance(age_bands, Mapping) else age_bands
        labels = band(column.to_numpy(), edges).to_numpy(dtype=object)
        return labels, [*band_labels(edges), MISSING]
    labels = column.map(lambda v: MISSING if pd.isna(v) else str(v))
    return labels.to_numpy(dtype=object), None


def _attribute(name, groups, order, y, d, s, control, air_threshold, alpha) -> AttributeFairness:
    features = pd.Series(groups, name=name)
    decisions = MetricFrame(
        metrics={"n": count, "selection_rate": selection_rate, "tpr": _tpr, "fpr": _fpr},
        y_true=y,
        y_pred=d,
        sensitive_features=features,
    ).by_group
    table = decisions.assign(
        selected=pd.Series(d).groupby(groups).sum(),
        positives=pd.Series(y).groupby(groups).sum(),
    )
    if order is not None:  # bands in their natural order, not alphabetical
        table = table.reindex([g for g in order if g in table.index])
    if s is not None:
        by_score = MetricFrame(
            metrics={"auc": _auc, "mean_score": _mean, "sd_score": _std},
            y_true=y,
            y_pred=s,
            sensitive_features=features,
        ).by_group
        table = table.join(by_score)
    if control is None:  # the most favoured group; ties go to the larger group, then the label
        ranked = table.reset_index().sort_values(
            ["selection_rate", "n", name], ascending=[False, False, True]
        )
        control = str(ranked[name].iloc[0])
    elif control not in table.index:
        raise InvalidInput(
            f"control group {control!r} is not a group of {name!r}; groups: {sorted(table.index)}"
        )
    c = table.loc[control]
    rows = []
    for group, r in table.iterrows():
        row = {
            "group": str(group),
            "n": int(r["n"]),
            "selected": int(r["selected"]),
            "selection_rate": float(r["selection_rate"]),
            "positives": int(r["positives"]),
            "tpr": float(r["tpr"]),
            "fpr": float(r["fpr"]),
        }
        if s is not None:
            row.update(
                auc=float(r["auc"]),
                mean_score=float(r["mean_score"]),
                smd=_smd(
                    r["mean_score"],
                    r["sd_score"],
                    int(r["n"]),
                    c["mean_score"],
                    c["sd_score"],
                    int(c["n"]),
                ),
            )
        row["marginal_effect_pp"] = 100 * (row["selection_rate"] - float(c["selection_rate"]))
        if group == control:
            row.update(
                air=1.0 if c["selection_rate"] > 0 else math.nan,
                p_value=math.nan,
                test=None,
                flagged=False,
            )
        else:
            test = adverse_impact_test(row["selected"], row["n"], int(c["selected"]), int(c["n"]))
            flagged = test["air"] < air_threshold and test["p_value"] < alpha
            row.update(test, flagged=bool(flagged))
        rows.append(row)
    kwargs = {"sensitive_features": features}
    return AttributeFairness(
        name,
        control,
        order is not None,
        rows,
        float(demographic_parity_difference(y, d, **kwargs)),
        float(demographic_parity_ratio(y, d, **kwargs)),
        float(equalized_odds_difference(y, d, **kwargs)),
        float(equalized_odds_ratio(y, d, **kwargs)),
    )
