"""Evaluation against oracles: scikit-learn metrics, scipy's KS test and hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.evaluate import (
    bootstrap_ci,
    by_segment,
    classification_report,
    clustering_report,
    evaluate,
    regression_report,
)


@pytest.fixture(scope="module")
def credit(german):
    """German credit data, a fitted model (sex and age excluded) and its scores."""
    x = pd.get_dummies(german.drop(columns=["risk", "sex", "age"]), dtype=float)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, german.risk)
    y = german.risk.to_numpy()
    return german, x, model, y, model.predict_proba(x)[:, 1]


@pytest.fixture(scope="module")
def report(credit):
    german, _, _, y, p = credit
    return classification_report(y, p, threshold=0.4, segments=german.sex)


def test_binary_metrics_match_sklearn(credit, report):
    *_, y, p = credit
    pred = (p >= 0.4).astype(int)
    m = report.metrics
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert report.confusion == skm.confusion_matrix(y, pred).tolist()
    assert report.classes == [0, 1] and report.positive == 1


def test_ks_matches_scipy_and_gini_is_two_auc_minus_one(credit, report):
    *_, y, p = credit
    assert report.metrics["ks"] == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic)
    assert report.metrics["gini"] == pytest.approx(2 * report.metrics["roc_auc"] - 1)


def test_hand_computed_binary_case():
    r = classification_report([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_bootstrap=0)
    assert r.metrics["roc_auc"] == pytest.approx(0.75)
    assert r.metrics["gini"] == pytest.approx(0.5)
    assert r.metrics["ks"] == pytest.approx(0.5)
    assert r.metrics["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert r.confusion == [[2, 0], [1, 1]]
    assert (r.metrics["precision"], r.metrics["recall"]) == (1.0, 0.5)
    assert r.metrics["f1"] == pytest.approx(2 / 3)
    assert r.intervals == {}


def test_string_labels_and_chosen_positive():
    y = ["bad", "good", "good", "bad", "good"]
    p_bad = [0.9, 0.2, 0.3, 0.6, 0.55]
    r = classification_report(y, p_bad, positive="bad", n_bootstrap=0)
    assert r.classes == ["good", "bad"]
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score([v == "bad" for v in y], p_bad))


def test_calibration_table(credit, report):
    *_, y, p = credit
    table = report.calibration
    assert len(table) == 10
    assert sum(b["count"] for b in table) == len(y)
    assert sum(b["positives"] for b in table) == y.sum()
    assert all(abs(b["count"] - 100) <= 1 for b in table)
    for b in table:
        inside = (p > b["lower"]) & (p <= b["upper"]) if b["bin"] else p <= b["upper"]
        assert b["mean_predicted"] == pytest.approx(p[inside].mean())
        assert b["observed_rate"] == pytest.approx(y[inside].mean())


def test_calibration_with_tied_scores_has_fewer_bins():
    y = np.array([0, 1] * 50)
    p = np.repeat([0.2, 0.5, 0.7], [40, 40, 20])
    table = classification_report(y, p, n_bootstrap=0).calibration
    assert [b["count"] for b in table] == [40, 40, 20]


def test_bootstrap_intervals_contain_estimate_and_are_deterministic(credit, report):
    *_, y, p = credit
    for name, ci in report.intervals.items():
        assert ci.low <= report.metrics[name] <= ci.high, name
        assert ci.valid == ci.resamples == 200
    again = classification_report(y, p, threshold=0.4)
    other = classification_report(y, p, threshold=0.4, seed=1)
    assert again.intervals == report.intervals
    assert other.intervals["roc_auc"] != report.intervals["roc_auc"]


def test_vectorised_intervals_equal_a_loop_over_sklearn_and_scipy(credit, report):
    *_, y, p = credit
    oracles = {
        "roc_auc": skm.roc_auc_score,
        "ks": lambda a, b: ks_2samp(b[a == 1], b[a == 0], method="asymp").statistic,
        "log_loss": lambda a, b: skm.log_loss(a, b, labels=[0, 1]),
        "brier": skm.brier_score_loss,
        "f1": lambda a, b: skm.f1_score(a, b >= 0.4),
    }
    for name, fn in oracles.items():
        looped = bootstrap_ci(fn, y, p, n=200, seed=0)
        assert looped.low == pytest.approx(report.intervals[name].low, abs=1e-12), name
        assert looped.high == pytest.approx(report.intervals[name].high, abs=1e-12), name


def test_bootstrap_narrows_with_more_data(credit):
    *_, y, p = credit
    small = classification_report(y[:200], p[:200]).intervals["roc_auc"]
    full = classification_report(y, p).intervals["roc_auc"]
    assert full.high - full.low < small.high - small.low


def test_bootstrap_ci_vectorised_form_matches_plain_form():
    x = np.random.default_rng(5).normal(size=300)
    plain = bootstrap_ci(np.mean, x, n=150, seed=2, alpha=0.1)
    vectorised = bootstrap_ci(
        lambda w, a: w @ a / a.size, x, n=150, seed=2, alpha=0.1, vectorized=True
    )
    assert plain.level == pytest.approx(0.9)
    assert (vectorised.low, vectorised.high) == pytest.approx((plain.low, plain.high))
    assert plain.low < x.mean() < plain.high


def test_segments_match_sklearn_on_each_subset(credit, report):
    german, *_, y, p = credit
    assert set(report.segments) == {"female", "male"}
    for sex, row in report.segments.items():
        mask = (german.sex == sex).to_numpy()
        assert row["n"] == mask.sum()
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y[mask], p[mask]))


def test_by_segment_marks_undefined_metrics_nan():
    out = by_segment(["a", "a", "b", None], lambda v: {"mean": v.mean()}, [1, 3, 5, 7])
    assert out == {
        "a": {"n": 2.0, "mean": 2.0},
        "b": {"n": 1.0, "mean": 5.0},
        "missing": {"n": 1.0, "mean": 7.0},
    }
    r = classification_report(
        [0, 1, 1, 1], [0.2, 0.7, 0.6, 0.9], segments=pd.Series(list("abbb")), n_bootstrap=0
    )
    assert np.isnan(r.segments["b"]["roc_auc"])
    assert r.to_dict()["segments"]["b"]["roc_auc"] is None


def test_to_dict_is_strict_json(report):
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(out) == {
        "problem",
        "n",
        "classes",
        "positive",
        "threshold",
        "metrics",
        "confusion_matrix",
        "calibration",
        "intervals",
        "segments",
    }
    assert out["intervals"]["roc_auc"]["level"] == pytest.approx(0.95)


def test_multiclass_matches_sklearn():
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    proba = make_pipeline(StandardScaler(), LogisticRegression(C=0.05)).fit(x, names)
    proba = proba.predict_proba(x)
    r = classification_report(names, proba)
    pred = np.array(sorted(set(names)))[proba.argmax(axis=1)]
    assert r.problem == "multiclass"
    assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(names, pred))
    assert r.metrics["f1_macro"] == pytest.approx(skm.f1_score(names, pred, average="macro"))
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(names, proba))
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(names, proba, multi_class="ovr"))
    assert r.confusion == skm.confusion_matrix(names, pred).tolist()
    assert r.intervals["accuracy"].low <= r.metrics["accuracy"] <= r.intervals["accuracy"].high


def test_regression_matches_sklearn(german):
    x = german[["duration", "age"]].to_numpy(float)
    y = german.credit_amount.to_numpy(float)
    pred = LinearRegression().fit(x, y).predict(x)
    r = regression_report(y, pred)
    assert r.metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert r.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert r.metrics["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert r.residual_quantiles["q50"] == pytest.approx(np.median(y - pred))
    assert r.residual_quantiles["q05"] == pytest.approx(np.quantile(y - pred, 0.05))
    looped = bootstrap_ci(skm.r2_score, y, pred, n=200, seed=0)
    assert (r.intervals["r2"].low, r.intervals["r2"].high) == pytest.approx(
        (looped.low, looped.high)
    )
    for name, ci in r.intervals.items():
        assert ci.low <= r.metrics[name] <= ci.high, name
    json.dumps(r.to_dict(), allow_nan=False)


def test_clustering_matches_sklearn(german):
    x = StandardScaler().fit_transform(german[["duration", "credit_amount", "age"]])
    labels = KMeans(n_clusters=3, n_init=3, random_state=0).fit_predict(x)
    r = clustering_report(x, labels)
    assert r.metrics["silhouette"] == pytest.approx(skm.silhouette_score(x, labels))
    assert r.metrics["davies_bouldin"] == pytest.approx(skm.davies_bouldin_score(x, labels))
    assert r.sizes == {str(k): int((labels == k).sum()) for k in range(3)}
    assert sum(r.sizes.values()) == len(x)


def test_evaluate_keeps_its_keys_and_agrees_with_sklearn(credit):
    german, x, model, y, p = credit
    data = x.assign(risk=german.risk)
    metrics = evaluate(model, data, "risk", "binary")
    assert list(metrics)[:4] == ["accuracy", "roc_auc", "log_loss", "brier"]
    assert {"ks", "rows", "gini", "precision", "recall", "f1", "roc_auc_ci_low"} <= set(metrics)
    assert metrics["rows"] == 1000.0
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, model.predict(x)))
    assert all(isinstance(v, float) for v in metrics.values())
    reg = LinearRegression().fit(x, german.credit_amount)
    out = evaluate(reg, x.assign(amount=german.credit_amount), "amount", "regression")
    assert {"rmse", "mae", "r2", "rows"} <= set(out)
    with pytest.raises(InvalidInput, match="problem type 'ranking'"):
        evaluate(model, data, "risk", "ranking")
    with pytest.raises(InvalidInput, match="target column 'nope'"):
        evaluate(model, data, "nope", "binary")


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.2, 0.8], "differ in length"),
        ([], [], "no rows"),
        ([1, 1, 1], [0.2, 0.8, 0.5], "single class"),
        ([0, 1], [0.2, 1.3], r"lie in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], "finite"),
        ([0, 1, 2], [[0.5, 0.5, 0.1]] * 3, "sum to one"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "binary scores need 2 classes"),
    ],
)
def test_bad_classification_input(y, p, message):
    with pytest.raises(InvalidInput, match=message):
        classification_report(y, p)


def test_other_bad_input():
    with pytest.raises(InvalidInput, match="differ in length"):
        regression_report([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInput, match="2 to 2 clusters, got 1"):
        clustering_report([[0.0], [1.0], [2.0]], [0, 0, 0])
    with pytest.raises(InvalidInput, match="at least one resample"):
        bootstrap_ci(np.mean, [1.0, 2.0], n=0)
    with pytest.raises(InvalidInput, match="positive class 'x'"):
        classification_report([0, 1], [0.2, 0.8], positive="x")
