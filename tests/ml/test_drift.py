"""Drift against oracles: hand-computed PSI (empty bins, unseen categories) and scipy's KS,
Wasserstein, chi-square and Jensen-Shannon on the same inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.drift import OTHER, drift_report, psi, score_drift


def _numeric(values, bins: int = 10, sample_size: int = 2000, seed: int = 0) -> dict:
    """A ``nexml-profile/1`` numeric column, binned independently of drift.py (bin index per
    value by searchsorted on the edges, rather than searching the edges in sorted values)."""
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
    k = max(edges.size - 1, 1)
    index = np.clip(np.searchsorted(edges, finite, side="left") - 1, 0, k - 1)
    rng = np.random.default_rng(seed)
    sample = rng.choice(finite, size=min(sample_size, finite.size), replace=False)
    return {
        "kind": "numeric",
        "missing_rate": 1 - finite.size / x.size,
        "edges": edges.tolist(),
        "counts": np.bincount(index, minlength=k).tolist(),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "sample": sample.tolist(),
    }


def _categorical(values, top: int = 50) -> dict:
    s = pd.Series(values)
    counts = s.dropna().astype(str).value_counts()
    frequencies = {str(k): int(v) for k, v in counts.iloc[:top].items()}
    frequencies[OTHER] = int(counts.iloc[top:].sum())
    return {
        "kind": "categorical",
        "missing_rate": float(s.isna().mean()),
        "frequencies": frequencies,
    }


def _profile(df: pd.DataFrame) -> dict:
    columns = {
        c: _numeric(df[c]) if pd.api.types.is_numeric_dtype(df[c]) else _categorical(df[c])
        for c in df.columns
    }
    return {"format": "nexml-profile/1", "rows": len(df), "columns": columns}


def _baseline(**columns: dict) -> dict:
    return {"format": "nexml-profile/1", "rows": 1000, "columns": columns}


def _reference(n: int = 20_000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n),
            "age": rng.integers(18, 80, n),
            "grade": rng.choice(list("ABCD"), n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


# --- PSI, hand-computed ------------------------------------------------------------------------


def test_uniform_half_range_gives_psi_above_3_not_the_035_of_dropping_empty_bins():
    uniform = {
        "kind": "numeric",
        "missing_rate": 0.0,
        "edges": np.linspace(0, 1, 11).tolist(),
        "counts": [1000] * 10,
        "std": 1 / math.sqrt(12),
        "sample": ((np.arange(2000) + 0.5) / 2000).tolist(),
    }
    current = pd.DataFrame({"x": (np.arange(50_000) + 0.5) / 100_000})  # uniform on [0, 0.5]
    result = drift_report(_baseline(x=uniform), current).columns["x"]

    assert result.actual == pytest.approx([0.2] * 5 + [0.0] * 5)
    by_hand = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert result.psi == pytest.approx(by_hand)
    assert result.psi > 3
    assert result.status == "alert"
    # the bug avoided: leaving out bins that are empty on either side
    kept = [(e, a) for e, a in zip(result.expected, result.actual, strict=True) if e > 0 and a > 0]
    dropped = sum((a - e) * math.log(a / e) for e, a in kept)
    assert dropped == pytest.approx(0.3466, abs=1e-3)


def test_three_bin_psi_by_hand_with_the_binning_convention():
    column = {"kind": "numeric", "missing_rate": 0.0, "edges": [0, 1, 2, 3], "counts": [50, 30, 20]}
    # below e0 -> bin 0; e0 and e1 -> bin 0 (closed); 2 -> bin 1 (right-closed); above e3 -> bin 2
    current = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]})
    result = drift_report(_baseline(x=column), current).columns["x"]

    assert result.actual == [3 / 8, 2 / 8, 3 / 8]
    assert result.expected == [0.5, 0.3, 0.2]
    by_hand = (
        (0.375 - 0.5) * math.log(0.375 / 0.5)
        + (0.25 - 0.3) * math.log(0.25 / 0.3)
        + (0.375 - 0.2) * math.log(0.375 / 0.2)
    )
    assert result.psi == pytest.approx(by_hand)
    assert result.psi == pytest.approx(psi([0.5, 0.3, 0.2], [0.375, 0.25, 0.375]))
    assert result.status == "warn"  # 0.1598


def test_psi_clips_to_epsilon_without_renormalising():
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    by_hand = (0.5 - 0.01) * math.log(0.5 / 0.01) + (0.01 - 0.5) * math.log(0.01 / 0.5)
    assert psi([0.5, 0.0, 0.5], [0.0, 0.5, 0.5], epsilon=0.01) == pytest.approx(by_hand)


def test_unseen_category_is_counted_in_psi_and_listed():
    column = {"kind": "categorical", "missing_rate": 0.0, "frequencies": {"a": 60, "b": 40}}
    current = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 3 + ["c"] * 2})
    result = drift_report(_baseline(g=column), current).columns["g"]

    assert result.cells == ["a", "b", OTHER]
    assert result.expected == [0.6, 0.4, 0.0]
    assert result.actual == [0.5, 0.3, 0.2]
    by_hand = (
        (0.5 - 0.6) * math.log(0.5 / 0.6)
        + (0.3 - 0.4) * math.log(0.3 / 0.4)
        + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    )
    assert result.psi == pytest.approx(by_hand)
    assert result.unseen == {"c": 0.2}
    assert (result.unseen_categories, result.unseen_share) == (1, 0.2)
    assert result.status == "alert"


def test_baseline_other_cell_and_numeric_categories_as_text():
    column = {"kind": "categorical", "missing_rate": 0.0, "frequencies": {"1": 70, OTHER: 30}}
    current = pd.DataFrame({"g": [1] * 7 + [2] * 2 + [3]})  # ints match the profile's text keys
    result = drift_report(_baseline(g=column), current).columns["g"]
    assert result.cells == ["1", OTHER]
    assert result.actual == [0.7, 0.3]
    assert result.psi == pytest.approx(0.0)
    assert result.unseen == {"2": 0.2, "3": 0.1}


def test_identical_distributions_give_zero_psi_and_ok():
    reference = _reference()
    report = drift_report(_profile(reference), reference)
    for result in report.columns.values():
        assert result.psi == pytest.approx(0.0, abs=1e-12)
        assert result.status == "ok"
        assert not result.drift_detected
        assert result.missing_rate_change == 0.0
    assert report.drift_share == 0.0
    assert not report.dataset_drift


# --- tests and distances against scipy ----------------------------------------------------------


def test_ks_matches_scipy_on_the_profile_sample():
    reference = _reference()
    profile = _profile(reference)
    current = _reference(n=800, seed=2)
    current["income"] *= 1.1
    result = drift_report(profile, current).columns["income"]
    oracle = stats.ks_2samp(profile["columns"]["income"]["sample"], current["income"])
    assert result.test == "ks"
    assert result.statistic == pytest.approx(oracle.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(oracle.pvalue, rel=1e-9)
    assert result.drift_detected == (oracle.pvalue < 0.05)


@pytest.mark.parametrize("column", ["income", "age"])  # age: integers, so many ties
def test_wasserstein_matches_scipy_divided_by_reference_std(column):
    reference = _reference()
    profile = _profile(reference)
    current = _reference(n=50_000, seed=3)
    current["income"] = current["income"] * 1.05 + 500
    current["age"] = current["age"] + 2
    result = drift_report(profile, current).columns[column]
    ref = profile["columns"][column]
    oracle = stats.wasserstein_distance(ref["sample"], current[column]) / ref["std"]
    assert result.test == "wasserstein"
    assert result.p_value is None
    assert result.statistic == pytest.approx(oracle, rel=1e-9)


def test_chi_square_matches_scipy_on_the_same_expected_counts():
    column = {
        "kind": "categorical",
        "missing_rate": 0.0,
        "frequencies": {"a": 500, "b": 300, "c": 200},
    }
    current = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 35 + ["c"] * 20 + ["z"] * 5})
    result = drift_report(_baseline(g=column), current).columns["g"]
    # unseen "z" pooled into one extra cell whose expectation is epsilon, then renormalised
    proportions = np.array([0.5, 0.3, 0.2, 1e-4])
    expected = proportions / proportions.sum() * 100
    oracle = stats.chisquare([40, 35, 20, 5], f_exp=expected)
    assert result.test == "chi-square"
    assert result.statistic == pytest.approx(oracle.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(oracle.pvalue, rel=1e-9)
    assert result.drift_detected


def test_jensen_shannon_matches_scipy_base_2():
    reference = _reference()
    profile = _profile(reference)
    rng = np.random.default_rng(4)
    current = _reference(n=30_000, seed=4)
    current["grade"] = rng.choice(list("ABCDE"), 30_000, p=[0.2, 0.3, 0.2, 0.2, 0.1])
    result = drift_report(profile, current).columns["grade"]
    oracle = jensenshannon(result.expected, result.actual, base=2)
    assert result.test == "jensen-shannon"
    assert result.statistic == pytest.approx(oracle, rel=1e-9)
    assert result.unseen == {"E": pytest.approx(0.1, abs=0.01)}
    assert result.drift_detected


def test_method_can_be_forced():
    reference = _reference()
    profile = _profile(reference)
    small = _reference(n=200, seed=5)
    large = _reference(n=5_000, seed=5)
    assert drift_report(profile, small, method="distance").columns["grade"].test == (
        "jensen-shannon"
    )
    assert drift_report(profile, large, method="test").columns["income"].test == "ks"
    assert drift_report(profile, large, max_test_rows=10_000).columns["grade"].test == (
        "chi-square"
    )


# --- thresholds, prediction drift, report ------------------------------------------------------


def test_thresholds_are_configurable():
    column = {"kind": "numeric", "missing_rate": 0.0, "edges": [0, 1, 2, 3], "counts": [50, 30, 20]}
    current = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]})  # PSI 0.1598
    baseline = _baseline(x=column)
    assert drift_report(baseline, current).columns["x"].status == "warn"
    assert drift_report(baseline, current, psi_warn=0.2, psi_alert=0.3).columns["x"].status == "ok"
    report = drift_report(baseline, current, psi_warn=0.05, psi_alert=0.15)
    assert report.columns["x"].status == "alert"
    assert report.drift_share == 1.0 and report.dataset_drift
    with pytest.raises(InvalidInput, match="psi_warn <= psi_alert"):
        drift_report(baseline, current, psi_warn=0.3, psi_alert=0.2)
    with pytest.raises(InvalidInput, match="method"):
        drift_report(baseline, current, method="magic")


def test_drift_share_and_dataset_drift():
    reference = _reference()
    profile = _profile(reference)
    current = _reference(n=10_000, seed=6)
    current["income"] *= 3  # one of three columns shifted
    report = drift_report(profile, current)
    assert report.alerts == ["income"]
    assert report.drift_share == pytest.approx(1 / 3)
    assert not report.dataset_drift
    assert drift_report(profile, current, dataset_drift_share=0.3).dataset_drift


def test_prediction_drift_by_score_column_and_by_function():
    reference = _reference()
    rng = np.random.default_rng(7)
    reference["score"] = rng.beta(2, 5, len(reference))
    profile = _profile(reference)
    current = _reference(n=10_000, seed=8)
    current["score"] = rng.beta(5, 2, 10_000)
    report = drift_report(profile, current, score_column="score")
    assert "score" not in report.columns
    assert report.prediction is not None and report.prediction.status == "alert"
    alone = score_drift(profile["columns"]["score"], current["score"].to_numpy())
    assert alone.psi == pytest.approx(report.prediction.psi)
    assert alone.statistic == pytest.approx(report.prediction.statistic)
    with pytest.raises(InvalidInput, match="no current scores"):
        score_drift(profile["columns"]["score"], [])


def test_missing_rate_change_and_all_missing_column():
    reference = _reference()
    profile = _profile(reference)
    current = _reference(n=2_000, seed=9).astype({"income": float})
    current.loc[:499, "income"] = np.nan
    current["age"] = np.nan
    current.loc[:99, "grade"] = None
    report = drift_report(profile, current)
    assert report.columns["income"].missing_rate_change == pytest.approx(0.25)
    assert report.columns["income"].rows == 1_500
    assert report.columns["grade"].missing_rate_current == pytest.approx(0.05)
    age = report.columns["age"]
    assert (age.status, age.psi, age.rows, age.missing_rate_current) == ("alert", None, 0, 1.0)


def test_constant_and_empty_baseline_columns():
    constant = {"kind": "numeric", "missing_rate": 0.0, "edges": [5.0], "counts": [], "std": 0.0}
    empty = {"kind": "numeric", "missing_rate": 1.0, "edges": [], "counts": [], "std": None}
    no_levels = {"kind": "categorical", "missing_rate": 1.0, "frequencies": {}}
    baseline = _baseline(k=constant, e=empty, g=no_levels, h=no_levels)
    current = pd.DataFrame({"k": [5.0] * 8 + [6.0] * 2, "e": [1.0] * 10, "g": ["a"] * 10})
    current["h"] = None
    report = drift_report(baseline, current)
    k = report.columns["k"]
    assert (k.cells, k.expected, k.actual) == ([5.0], [1.0, 0.0], [0.8, 0.2])
    assert k.psi == pytest.approx((0.8 - 1) * math.log(0.8) + (0.2 - 1e-4) * math.log(0.2 / 1e-4))
    for name in ("e", "g"):
        assert (report.columns[name].status, report.columns[name].psi) == ("alert", None)
        assert "baseline holds no values" in report.columns[name].note
    assert report.columns["h"].status == "ok"


def test_to_dict_is_strict_json():
    reference = _reference()
    reference["score"] = np.linspace(0, 1, len(reference))
    current = _reference(n=3_000, seed=10)
    current["score"] = np.linspace(0.2, 1, 3_000)
    data = drift_report(_profile(reference), current, score_column="score").to_dict()
    json.dumps(data, allow_nan=False)
    assert list(data) == [
        "format", "rows", "baseline_rows", "settings", "n_columns", "n_warn", "n_alert",
        "drift_share", "dataset_drift", "columns", "prediction",
    ]  # fmt: skip
    assert data["format"] == "nexml-drift/1"
    assert data["settings"]["psi_alert"] == 0.25


# --- refusals -----------------------------------------------------------------------------------


def test_missing_columns_are_named():
    profile = _profile(_reference())
    with pytest.raises(InvalidInput, match="lacks baseline column.*income, grade"):
        drift_report(profile, _reference(n=100)[["age"]])
    with pytest.raises(InvalidInput, match="no baseline profile for column.*salary"):
        drift_report(profile, _reference(n=100), columns=["age", "salary"])


def test_empty_current_and_bad_baseline_are_refused():
    profile = _profile(_reference())
    with pytest.raises(InvalidInput, match="no rows"):
        drift_report(profile, _reference(n=100).iloc[:0])
    with pytest.raises(InvalidInput, match="nexml-profile/1"):
        drift_report({"columns": {}}, _reference(n=100))
    with pytest.raises(InvalidInput, match="'grade' is numeric in the baseline"):
        profile["columns"]["grade"] = profile["columns"]["age"]
        drift_report(profile, _reference(n=100))


def test_agrees_with_the_profile_module_binning():
    profile_module = pytest.importorskip("nexml_ext.ml.profile")
    reference = _reference()
    baseline = profile_module.profile(reference)
    report = drift_report(baseline, reference)
    assert all(r.psi == pytest.approx(0.0, abs=1e-12) for r in report.columns.values())
    edges = baseline["columns"]["income"]["edges"]
    x = np.array([edges[0] - 1, edges[0], edges[1], np.nextafter(edges[1], np.inf), edges[-1] + 1])
    counts = profile_module.bin_counts(x, edges)
    ours = drift_report(
        _baseline(income=baseline["columns"]["income"]), pd.DataFrame({"income": x})
    )
    assert np.allclose(np.asarray(counts) / x.size, ours.columns["income"].actual)
