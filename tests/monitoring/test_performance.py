"""Monitoring performance against oracles: scikit-learn metrics, sklearn's calibration_curve and
hand-computed small cases; refusals of bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.performance import (
    calibration_bins,
    classification_performance,
    quantile_edges,
    regression_performance,
    segment_labels,
)


def sklearn_metrics(y01, proba, threshold=0.5):
    pred = (proba >= threshold).astype(int)
    return {
        "auc": skm.roc_auc_score(y01, proba),
        "accuracy": skm.accuracy_score(y01, pred),
        "precision": skm.precision_score(y01, pred, zero_division=np.nan),
        "recall": skm.recall_score(y01, pred, zero_division=np.nan),
        "f1": skm.f1_score(y01, pred, zero_division=np.nan),
        "brier": skm.brier_score_loss(y01, proba),
    }


def sklearn_ece(y01, proba, n_bins, strategy="uniform"):
    """ECE from calibration_curve's bins; the counts come from the same bin assignment."""
    prob_true, prob_pred = calibration_curve(y01, proba, n_bins=n_bins, strategy=strategy)
    if strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        edges = np.percentile(proba, np.linspace(0, 1, n_bins + 1) * 100)  # as sklearn does
    counts = np.bincount(np.searchsorted(edges[1:-1], proba), minlength=n_bins)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.abs(prob_true - prob_pred)) / counts.sum())


@pytest.fixture(scope="module")
def credit(german):
    """German credit outcomes ('good'/'bad'), a fitted model's P(good) and the slicing columns."""
    x = pd.get_dummies(german.drop(columns=["risk", "sex", "age"]), dtype=float)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, german.risk)
    proba = model.predict_proba(x)[:, 1]
    labels = np.where(german.risk == 1, "good", "bad")
    return german, labels, proba


@pytest.fixture(scope="module")
def perf(credit):
    german, labels, proba = credit
    return classification_performance(
        labels,
        proba,
        positive_label="good",
        threshold=0.6,
        segments=german[["purpose", "credit_amount"]],
        protected={"sex": german.sex, "age": german.age},
        bins={"credit_amount": [2000, 5000]},
    )


def assert_matches_sklearn(metrics, y01, proba, threshold):
    expected = sklearn_metrics(y01, proba, threshold)
    for name, value in expected.items():
        if math.isnan(value):
            assert metrics[name] is None, name
        else:
            assert metrics[name] == pytest.approx(value, abs=1e-12), name


def test_overall_metrics_agree_with_sklearn(credit, perf):
    _, labels, proba = credit
    y01 = (labels == "good").astype(int)
    overall = perf["overall"]
    assert overall["n"] == 1000 and overall["positives"] == 700
    assert perf["positive_label"] == "good" and perf["threshold"] == 0.6
    assert_matches_sklearn(overall, y01, proba, 0.6)
    tn, fp, fn, tp = skm.confusion_matrix(y01, (proba >= 0.6).astype(int)).ravel()
    assert (overall["tn"], overall["fp"], overall["fn"], overall["tp"]) == (tn, fp, fn, tp)
    assert overall["ece"] == pytest.approx(sklearn_ece(y01, proba, 10), abs=1e-12)
    prob_true, prob_pred = calibration_curve(y01, proba, n_bins=10)
    table = overall["calibration"]
    np.testing.assert_allclose([b["observed_rate"] for b in table], prob_true, atol=1e-12)
    np.testing.assert_allclose([b["mean_predicted"] for b in table], prob_pred, atol=1e-12)
    assert sum(b["count"] for b in table) == 1000
    json.dumps(perf)  # plain JSON, ready to store


def test_segments_and_groups_agree_with_sklearn(credit, perf):
    german, labels, proba = credit
    y01 = (labels == "good").astype(int)
    assert list(perf["by_segment"]["credit_amount"]) == ["<2000", "2000-4999", "5000+"]
    masks = {
        "<2000": german.credit_amount < 2000,
        "2000-4999": (german.credit_amount >= 2000) & (german.credit_amount < 5000),
        "5000+": german.credit_amount >= 5000,
    }
    for label, mask in masks.items():
        metrics = perf["by_segment"]["credit_amount"][label]
        assert metrics["n"] == mask.sum()
        assert_matches_sklearn(metrics, y01[mask], proba[mask], 0.6)
    assert sorted(perf["by_segment"]["purpose"]) == sorted(german.purpose.unique())
    for purpose, metrics in perf["by_segment"]["purpose"].items():
        mask = (german.purpose == purpose).to_numpy()
        assert metrics["n"] == mask.sum()
        if 0 < y01[mask].sum() < mask.sum():
            assert_matches_sklearn(metrics, y01[mask], proba[mask], 0.6)
    for sex, metrics in perf["by_group"]["sex"].items():
        mask = (german.sex == sex).to_numpy()
        assert_matches_sklearn(metrics, y01[mask], proba[mask], 0.6)
        assert metrics["ece"] == pytest.approx(sklearn_ece(y01[mask], proba[mask], 10))
    # numeric protected attributes get the fairness report's age bands
    ages = perf["by_group"]["age"]
    assert list(ages) == ["<25", "25-34", "35-44", "45-54", "55-64", "65+"]
    young = (german.age < 25).to_numpy()
    assert ages["<25"]["n"] == young.sum()
    assert ages["<25"]["auc"] == pytest.approx(skm.roc_auc_score(y01[young], proba[young]))


def test_hand_computed_case():
    # outcomes 1 1 0 0 1, scores .9 .4 .6 .1 .8 at threshold .5: TP 2, FN 1, FP 1, TN 1
    result = classification_performance([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.8], n_bins=2)[
        "overall"
    ]
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (2, 1, 1, 1)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    # pairs (pos, neg): .9>.6 .9>.1 .4<.6 .4>.1 .8>.6 .8>.1 -> 5 of 6
    assert result["auc"] == pytest.approx(5 / 6)
    assert result["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01 + 0.04) / 5)
    # bins [0, .5]: scores .4 .1 (outcomes 1 0); (.5, 1]: .9 .6 .8 (outcomes 1 0 1)
    low, high = result["calibration"]
    assert (low["count"], low["mean_predicted"], low["observed_rate"]) == (2, 0.25, 0.5)
    assert high["count"] == 3 and high["mean_predicted"] == pytest.approx(2.3 / 3)
    assert high["observed_rate"] == pytest.approx(2 / 3)
    expected_ece = (2 * 0.25 + 3 * abs(2 / 3 - 2.3 / 3)) / 5
    assert result["ece"] == pytest.approx(expected_ece)


def test_ties_and_edges_follow_sklearn():
    y = [0, 1, 0, 1, 1, 0]
    p = [0.5, 0.5, 0.2, 0.8, 0.2, 0.8]  # tied scores across classes; 0.5 sits on a bin edge
    result = classification_performance(y, p, n_bins=2)["overall"]
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert [b["count"] for b in result["calibration"]] == [4, 2]  # 0.5 falls in the lower bin
    prob_true, prob_pred = calibration_curve(y, p, n_bins=2)
    assert [b["observed_rate"] for b in result["calibration"]] == pytest.approx(prob_true)


def test_single_class_says_auc_is_undefined():
    result = classification_performance([1, 1, 1], [0.9, 0.2, 0.7])["overall"]
    assert result["auc"] is None
    assert any("auc undefined" in note and "all positive" in note for note in result["notes"])
    assert result["accuracy"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    negatives = classification_performance(["no", "no"], [0.1, 0.2], positive_label="yes")
    assert negatives["overall"]["positives"] == 0
    assert negatives["overall"]["precision"] is None and negatives["overall"]["recall"] is None
    assert any("recall undefined" in note for note in negatives["overall"]["notes"])


def test_predicted_labels_without_scores():
    result = classification_performance(
        ["a", "b", "b", "a"], y_pred=["a", "b", "a", "a"], positive_label="b"
    )["overall"]
    assert result["recall"] == pytest.approx(skm.recall_score([0, 1, 1, 0], [0, 1, 0, 0]))
    assert result["precision"] == 1.0 and result["auc"] is None and result["calibration"] == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([], []), {}, "no rows"),
        (([0, 1, 1], [0.2, 0.4]), {}, "lengths differ (outcomes 3, scores 2)"),
        (([0, 1, 2], [0.1, 0.2, 0.3]), {}, "binary outcomes; got 3 labels [0, 1, 2]"),
        ((["bad", "good"], [0.1, 0.2]), {}, "name the positive one with positive_label"),
        ((["bad", "good"], [0.1, 0.2]), {"positive_label": "yes"}, "'yes' is not one of"),
        (([0, 1], [0.1, 1.2]), {}, "probabilities in [0, 1]; 1 are not"),
        (([0, 1], [0.1, float("nan")]), {}, "probabilities in [0, 1]"),
        (([0, None], [0.1, 0.2]), {}, "outcomes hold 1 missing values"),
        (([0, 1], None), {}, "needs scores or predicted labels"),
        (([0, 1], [0.1, 0.2]), {"threshold": 2}, "threshold must be a number in [0, 1]"),
        (([0, 1], [0.1, 0.2]), {"strategy": "kmeans"}, "'uniform' or 'quantile'"),
        (([0, 1], [0.1, 0.2]), {"n_bins": 0}, "whole number of bins"),
        (([0, 1], [0.1, 0.2]), {"segments": {"region": ["n"]}}, "segment 'region' 1"),
    ],
)
def test_bad_input_is_refused(args, kwargs, message):
    with pytest.raises(InvalidInput) as caught:
        classification_performance(*args, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)), min_size=2, max_size=60
    ),
    n_bins=st.integers(1, 12),
    strategy=st.sampled_from(["uniform", "quantile"]),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
)
def test_random_inputs_agree_with_sklearn(data, n_bins, strategy, threshold):
    y01 = np.array([int(y) for y, _ in data])
    proba = np.array([p for _, p in data])
    result = classification_performance(
        y01, proba, threshold=threshold, n_bins=n_bins, strategy=strategy
    )["overall"]
    if 0 < y01.sum() < y01.size:
        assert_matches_sklearn(result, y01, proba, threshold)
        assert result["ece"] == pytest.approx(sklearn_ece(y01, proba, n_bins, strategy), abs=1e-9)
    else:
        assert result["auc"] is None
    assert 0 <= result["ece"] <= 1
    assert sum(b["count"] for b in result["calibration"]) == y01.size


def test_calibration_bins_match_calibration_curve_quantile():
    rng = np.random.default_rng(3)
    proba = rng.beta(2, 5, 500)
    y01 = (rng.random(500) < proba).astype(int)
    table = calibration_bins(y01, proba, 8, "quantile")
    prob_true, prob_pred = calibration_curve(y01, proba, n_bins=8, strategy="quantile")
    np.testing.assert_allclose([b["observed_rate"] for b in table], prob_true)
    np.testing.assert_allclose([b["mean_predicted"] for b in table], prob_pred)
    assert [b["count"] for b in table] == [63, 62, 63, 62, 62, 63, 62, 63]


def test_segment_labels_bin_numbers_and_keep_categories():
    labels, order = segment_labels(pd.Series([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, None]), 2)
    # the median 6 is the edge: 1-5 below it, 6-11 at or above it
    assert order == ["<6", "6+", "missing"]
    assert list(labels) == ["<6"] * 5 + ["6+"] * 6 + ["missing"]
    assert quantile_edges(range(1, 101), 4) == [26.0, 51.0, 76.0]
    labels, order = segment_labels(["b", "a", None, "b"])
    assert order == ["a", "b", "missing"] and list(labels) == ["b", "a", "missing", "b"]


def test_regression_agrees_with_sklearn(german):
    y = german.credit_amount.to_numpy(dtype=float)
    x = german[["duration", "age"]].to_numpy(dtype=float)
    pred = np.c_[np.ones(len(x)), x] @ np.linalg.lstsq(np.c_[np.ones(len(x)), x], y, rcond=None)[0]
    result = regression_performance(y, pred, protected={"sex": german.sex})
    overall = result["overall"]
    assert overall["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert overall["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert overall["r2"] == pytest.approx(skm.r2_score(y, pred))
    women = (german.sex == "female").to_numpy()
    assert result["by_group"]["sex"]["female"]["r2"] == pytest.approx(
        skm.r2_score(y[women], pred[women])
    )
    constant = regression_performance([3.0, 3.0], [2.0, 4.0])["overall"]
    assert constant["r2"] is None and constant["mae"] == 1.0 and constant["bias"] == 0.0
    with pytest.raises(InvalidInput, match="predictions hold 1 missing or infinite values"):
        regression_performance([1.0, 2.0], [1.0, float("inf")])
