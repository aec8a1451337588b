"""Fairness against oracles: fairlearn's MetricFrame and metrics, scipy's tests, hand cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy.stats import chi2, chi2_contingency, fisher_exact
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.fairness import adverse_impact_test, band, band_labels, fairness_report


@pytest.fixture(scope="module")
def scored(german):
    """Scores and approvals of a model fitted without sex and age."""
    x = pd.get_dummies(german.drop(columns=["risk", "sex", "age"]), dtype=float)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, german.risk)
    scores = model.predict_proba(x)[:, 1]
    return german.risk.to_numpy(), (scores >= 0.5).astype(int), scores


@pytest.fixture(scope="module")
def report(german, scored):
    y, decision, scores = scored
    return fairness_report(y, decision, scores, german[["sex", "age"]])


def _sensitive(german, attribute):
    return band(german.age) if attribute == "age" else german.sex


@pytest.mark.parametrize("attribute", ["sex", "age"])
def test_group_rates_match_fairlearn_metricframe(german, scored, report, attribute):
    y, decision, _ = scored
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=y,
        y_pred=decision,
        sensitive_features=_sensitive(german, attribute),
    ).by_group
    table = report.attributes[attribute].table()
    assert sorted(table.index) == sorted(frame.index)
    for column in ("selection_rate", "tpr", "fpr"):
        got = table[column].reindex(frame.index).to_numpy(float)
        assert got == pytest.approx(frame[column].to_numpy(float)), column
    assert table["n"].sum() == len(y)


@pytest.mark.parametrize("attribute", ["sex", "age"])
def test_parity_gaps_match_fairlearn(german, scored, report, attribute):
    y, decision, _ = scored
    features = _sensitive(german, attribute)
    result = report.attributes[attribute]
    assert result.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(y, decision, sensitive_features=features)
    )
    assert result.demographic_parity_ratio == pytest.approx(
        demographic_parity_ratio(y, decision, sensitive_features=features)
    )
    assert result.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(y, decision, sensitive_features=features)
    )
    assert result.equalized_odds_ratio == pytest.approx(
        equalized_odds_ratio(y, decision, sensitive_features=features)
    )


def test_scores_by_group_auc_and_smd_by_hand(german, scored):
    y, decision, scores = scored
    result = fairness_report(y, decision, scores, german[["sex"]], control={"sex": "male"})
    table = result.attributes["sex"].table()
    male, female = (german.sex == "male").to_numpy(), (german.sex == "female").to_numpy()
    assert table.loc["female", "auc"] == pytest.approx(roc_auc_score(y[female], scores[female]))
    a, b = scores[female], scores[male]
    pooled = math.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    assert table.loc["female", "smd"] == pytest.approx((a.mean() - b.mean()) / pooled)
    assert table.loc["female", "mean_score"] == pytest.approx(a.mean())
    sr_f, sr_m = decision[female].mean(), decision[male].mean()
    assert table.loc["female", "marginal_effect_pp"] == pytest.approx(100 * (sr_f - sr_m))
    assert table.loc["female", "air"] == pytest.approx(sr_f / sr_m)
    assert table.loc["male", "smd"] == 0 and table.loc["male", "air"] == 1


def test_default_control_is_the_most_favoured_group(report):
    for result in report.attributes.values():
        table = result.table()
        assert table.loc[result.control, "selection_rate"] == table["selection_rate"].max()
        assert (table["air"] <= 1 + 1e-12).all()


def _tiny(control_selected, group_selected, n=100, **kwargs):
    """A decisions-only case: control group ``c`` and group ``g`` of ``n`` applicants each."""
    decision = np.r_[np.arange(n) < control_selected, np.arange(n) < group_selected].astype(int)
    group = pd.DataFrame({"group": ["c"] * n + ["g"] * n})
    return fairness_report(decision, decision, None, group, **kwargs).attributes["group"]


def test_air_hand_computed_and_flagged_with_chi_square():
    result = _tiny(50, 30)
    row = result.table().loc["g"]
    assert result.control == "c"
    assert row["air"] == pytest.approx(0.6)
    assert row["marginal_effect_pp"] == pytest.approx(-20)
    # chi-square by hand: N (ad - bc)^2 / (row and column totals) = 200·2000²/(100·100·80·120)
    assert row["test"] == "chi2"
    assert row["p_value"] == pytest.approx(chi2.sf(200 * 2000**2 / (100 * 100 * 80 * 120), 1))
    table = [[30, 70], [50, 50]]
    assert row["p_value"] == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    assert bool(row["flagged"]) and result.flagged == ["g"]
    assert not _tiny(50, 30, air_threshold=0.5).table().loc["g", "flagged"]
    assert not _tiny(50, 30, alpha=0.001).table().loc["g", "flagged"]


def test_fisher_exact_when_expected_counts_are_small():
    result = _tiny(8, 1, n=10)  # expected selections 4.5 per group: below 5
    row = result.table().loc["g"]
    assert row["test"] == "fisher"
    assert row["air"] == pytest.approx(0.125)
    assert row["p_value"] == pytest.approx(fisher_exact([[1, 9], [8, 2]]).pvalue)
    assert _tiny(8, 2, n=10).table().loc["g", "test"] == "chi2"  # expected counts all 5
    assert bool(row["flagged"])
    small = _tiny(4, 2, n=5).table().loc["g"]  # AIR 0.5 but not significant: no flag
    assert small["air"] == pytest.approx(0.5) and not small["flagged"]
    assert adverse_impact_test(0, 10, 0, 10)["test"] == "fisher"
    assert math.isnan(adverse_impact_test(0, 10, 0, 10)["air"])


def test_named_control_group(german, scored):
    y, decision, scores = scored
    result = fairness_report(y, decision, scores, german[["age"]], control={"age": "35-44"})
    assert result.attributes["age"].control == "35-44"
    assert result.attributes["age"].table().loc["35-44", "air"] == 1


def test_age_band_edges():
    ages = [18, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 90, np.nan]
    assert band(ages).tolist() == [
        "<25",
        "<25",
        "25-34",
        "25-34",
        "35-44",
        "35-44",
        "45-54",
        "45-54",
        "55-64",
        "55-64",
        "65+",
        "65+",
        "missing",
    ]
    assert band([29, 30, 49.5, 50], (30, 50)).tolist() == ["<30", "30-49", "30-49", "50+"]
    assert band_labels((0.5, 1.5)) == ["<0.5", "0.5-<1.5", "1.5+"]
    with pytest.raises(InvalidInput, match="increasing"):
        band([1], (40, 30))


def test_continuous_attributes_are_banded_in_order(german, scored, report):
    y, decision, scores = scored
    age = report.attributes["age"]
    assert age.banded and not report.attributes["sex"].banded
    assert list(age.table().index) == ["<25", "25-34", "35-44", "45-54", "55-64", "65+"]
    custom = fairness_report(y, decision, scores, german[["age", "job"]], age_bands={"age": (40,)})
    assert list(custom.attributes["age"].table().index) == ["<40", "40+"]
    assert not custom.attributes["job"].banded  # four distinct values: categories
    assert list(custom.attributes["job"].table().index) == ["0", "1", "2", "3"]


def test_group_with_one_outcome_class_is_nan_safe():
    y = np.array([1, 0, 1, 1, 1, 1])
    decision = np.array([1, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.6])
    sensitive = pd.DataFrame({"g": list("aaabbb")})
    result = fairness_report(y, decision, scores, sensitive).attributes["g"]
    b = result.table().loc["b"]
    assert math.isnan(b["auc"]) and math.isnan(b["fpr"])
    assert b["tpr"] == pytest.approx(2 / 3)
    assert result.to_dict()["groups"][1]["auc"] is None


def test_to_dict_and_summary(report):
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(out) == {"n", "favourable", "air_threshold", "alpha", "flagged", "attributes"}
    assert set(out["attributes"]["sex"]) >= {
        "attribute",
        "control",
        "banded",
        "groups",
        "flagged",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
        "equalized_odds_ratio",
    }
    summary = report.summary()
    assert list(summary.index) == ["sex", "age"]
    assert {"control", "lowest_air", "dp_difference", "flagged"} <= set(summary.columns)


def test_string_coded_decisions():
    decision = np.array(["approve"] * 6 + ["decline"] * 4)
    outcome = np.array(["good"] * 7 + ["bad"] * 3)
    groups = pd.DataFrame({"sex": ["f", "m"] * 5})
    result = fairness_report(
        outcome, decision, None, groups, favourable="approve", favourable_outcome="good"
    )
    table = result.attributes["sex"].table()
    assert table["selection_rate"].tolist() == [0.6, 0.6]
    assert table["tpr"].to_numpy() == pytest.approx(
        MetricFrame(
            metrics=true_positive_rate,
            y_true=(outcome == "good").astype(int),
            y_pred=(decision == "approve").astype(int),
            sensitive_features=groups["sex"],
        ).by_group.to_numpy()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [1, 0]}, "differ in length"),
        ({"y_true": [], "y_pred_or_decision": [], "sensitive": pd.DataFrame({"s": []})}, "no rows"),
        ({"y_pred_or_decision": [0, 1, 2]}, "two values"),
        ({"favourable": "yes"}, "favourable value 'yes' is not among the decisions"),
        ({"favourable_outcome": "good"}, "favourable outcome 'good' is not among y_true"),
        ({"control": {"s": "z"}}, "control group 'z'"),
        ({"control": {"race": "a"}}, "unknown attributes"),
        ({"sensitive": pd.DataFrame(index=range(3))}, "one column per protected attribute"),
    ],
)
def test_bad_input(kwargs, message):
    args = {
        "y_true": [1, 0, 1],
        "y_pred_or_decision": [1, 0, 0],
        "scores": None,
        "sensitive": pd.DataFrame({"s": ["a", "b", "a"]}),
        **kwargs,
    }
    with pytest.raises(InvalidInput, match=message):
        fairness_report(
            args.pop("y_true"),
            args.pop("y_pred_or_decision"),
            args.pop("scores"),
            args.pop("sensitive"),
            **args,
        )
