"""The drift baseline: hand-computed cases, numpy/pandas oracles, JSON and determinism."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.profile import FORMAT, OTHER, bin_counts, profile


def test_hand_computed_numeric_column():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan, np.inf, None]})
    result = profile(df, bins=4)
    assert result["format"] == FORMAT == "nexml-profile/1"
    assert result["rows"] == 8
    x = result["columns"]["x"]
    assert x["kind"] == "numeric"
    assert x["missing_rate"] == 3 / 8  # NaN, None and inf
    assert x["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert x["counts"] == [2, 1, 1, 1]  # [1, 2], (2, 3], (3, 4], (4, 5]
    assert (x["mean"], x["min"], x["max"]) == (3.0, 1.0, 5.0)
    assert x["std"] == pytest.approx(statistics.pstdev([1, 2, 3, 4, 5]))
    assert x["sample"] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_tied_quantiles_are_deduplicated():
    df = pd.DataFrame({"x": [0, 0, 0, 0, 0, 0, 1, 2]})
    x = profile(df, bins=4)["columns"]["x"]
    # quantiles at 0, .25, .5, .75, 1 by linear interpolation: 0, 0, 0, 0.25, 2
    assert x["edges"] == [0.0, 0.25, 2.0]
    assert x["counts"] == [6, 2]


def test_constant_and_empty_numeric_columns():
    df = pd.DataFrame({"c": [7, 7, 7], "gone": [np.nan] * 3, "binary": [0, 1, 1]})
    columns = profile(df)["columns"]
    assert columns["c"]["edges"] == [7.0] and columns["c"]["counts"] == []
    assert columns["c"]["std"] == 0.0
    assert columns["gone"] == {
        "kind": "numeric",
        "missing_rate": 1.0,
        "edges": [],
        "counts": [],
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "sample": [],
    }
    assert columns["binary"]["kind"] == "numeric"  # numeric dtype stays numeric
    # linear interpolation between the 0 and the 1s keeps the two values in separate bins
    np.testing.assert_allclose(columns["binary"]["edges"], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert columns["binary"]["counts"] == [1, 0, 0, 0, 2]


def test_hand_computed_categorical_column_with_other():
    df = pd.DataFrame({"k": ["a", "b", "a", "c", None, "a", "b", "d", "c", "e"]})
    k = profile(df, top_categories=2)["columns"]["k"]
    assert k == {
        "kind": "categorical",
        "missing_rate": 0.1,
        "frequencies": {"a": 3, "b": 2, OTHER: 4},
    }
    ties = profile(df, top_categories=3)["columns"]["k"]["frequencies"]
    assert list(ties.items()) == [("a", 3), ("b", 2), ("c", 2), (OTHER, 2)]
    assert OTHER not in profile(df)["columns"]["k"]["frequencies"]


def test_booleans_categories_and_dates():
    df = pd.DataFrame(
        {
            "flag": [True, False, True],
            "grade": pd.Categorical(["x", "x", "y"], categories=["x", "y", "unused"]),
            "mixed": [1, "1", 2],
            "when": pd.to_datetime(["2024-01-01"] * 3),
        }
    )
    columns = profile(df)["columns"]
    assert columns["flag"] == {
        "kind": "categorical",
        "missing_rate": 0.0,
        "frequencies": {"True": 2, "False": 1},
    }
    assert columns["grade"]["frequencies"] == {"x": 2, "y": 1}
    assert columns["mixed"]["frequencies"] == {"1": 2, "2": 1}
    assert "when" not in columns


def test_german_profile_against_pandas(german):
    result = profile(german, bins=10)
    assert result["rows"] == 1000
    assert list(result["columns"]) == list(german.columns)
    for name, column in result["columns"].items():
        series = german[name]
        if column["kind"] == "numeric":
            expected = np.unique(series.quantile(np.linspace(0, 1, 11)).to_numpy())
            np.testing.assert_allclose(column["edges"], expected)
            assert sum(column["counts"]) == series.notna().sum()
            assert column["mean"] == pytest.approx(series.mean())
            assert column["std"] == pytest.approx(series.std(ddof=0))
            assert len(column["sample"]) == 1000
        else:
            assert column["frequencies"] == series.value_counts().to_dict()
    assert result["columns"]["sex"]["kind"] == "categorical"


def test_bin_counts_convention():
    edges = [1.0, 2.0, 3.0]
    assert bin_counts([1.0, 2.0, 3.0], edges).tolist() == [2, 1]  # right-closed, first closed
    assert bin_counts([-5.0, 0.999, 3.001, 99.0, np.nan], edges).tolist() == [2, 2]
    assert bin_counts([1.0], [1.0]).tolist() == []
    assert bin_counts([], edges).tolist() == [0, 0]


def test_bin_counts_agrees_with_numpy_histogram_on_interior_data():
    rng = np.random.default_rng(42)
    edges = np.sort(rng.uniform(-3, 3, size=12))
    values = rng.normal(size=20_000)
    interior = values[(values > edges[0]) & (values < edges[-1])]
    assert not np.isin(interior, edges).any()
    expected, _ = np.histogram(interior, bins=edges)
    np.testing.assert_array_equal(bin_counts(interior, edges), expected)


def test_json_round_trip_and_no_nan(german):
    df = german.assign(gap=german["age"].where(german.index % 3 != 0), inf=np.inf)
    result = profile(df)
    dumped = json.dumps(result, allow_nan=False)
    assert json.loads(dumped) == result


def test_sample_is_seeded_and_without_replacement():
    df = pd.DataFrame({"x": np.arange(10_000, dtype=float), "y": np.arange(10_000) * 2.0})
    first = profile(df, sample_size=500, seed=0)
    assert profile(df, sample_size=500, seed=0) == first
    other = profile(df, sample_size=500, seed=1)
    sample = first["columns"]["x"]["sample"]
    assert len(sample) == len(set(sample)) == 500
    assert set(sample) <= set(df["x"])
    assert other["columns"]["x"]["sample"] != sample
    assert other["columns"]["x"]["edges"] == first["columns"]["x"]["edges"]
    # each column has its own stream: y's sample is not x's positions doubled
    assert [v / 2 for v in first["columns"]["y"]["sample"]] != sample
    # a column's sample depends on its own values and name, not on the other columns
    alone = profile(df[["y"]], sample_size=500, seed=0)
    assert alone["columns"]["y"] == first["columns"]["y"]


def test_refusals():
    with pytest.raises(InvalidInput, match="without rows"):
        profile(pd.DataFrame({"x": []}))
    with pytest.raises(InvalidInput, match="bins must be at least 1"):
        profile(pd.DataFrame({"x": [1]}), bins=0)
