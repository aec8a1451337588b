"""Chunked drift over Parquet files equals ml/drift.py's in-memory drift on the same rows.

The oracle is ``drift.drift_report`` on the whole table (itself checked against scipy in
tests/ml/test_drift.py): PSI cells exactly, KS statistic and p-value exactly, Wasserstein and
the rest to float rounding (the chunked sums are added in another order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.ml import batch
from nexml_ext.ml.artifact import load
from nexml_ext.ml.drift import drift_report
from nexml_ext.ml.profile import profile

from .conftest import write_parts


def assert_same_report(expected: dict, got: dict, exact_tests: bool = False) -> None:
    """Two ``DriftReport.to_dict()`` results agree: counts, cells and verdicts exactly; floats
    to 1e-12 relative (the KS statistic and p-value exactly when ``exact_tests``)."""
    assert got["rows"] == expected["rows"]
    assert list(got["columns"]) == list(expected["columns"])
    for name, want in expected["columns"].items():
        have = got["columns"][name]
        for key, value in want.items():
            if isinstance(value, float) and not (exact_tests and key in ("statistic", "p_value")):
                assert have[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, key)
            else:
                assert have[key] == value, (name, key)
    for key in ("n_warn", "n_alert", "drift_share", "dataset_drift"):
        assert got[key] == expected[key]


@pytest.mark.parametrize(
    ("method", "collect_limit"),
    [("auto", None), ("auto", 1), ("test", None), ("distance", 1000)],
)
def test_chunked_drift_equals_in_memory_drift(
    credit_dir, credit_current, credit_profile, method, collect_limit
):
    columns = [c for c in credit_current.columns if c != "risk"]
    expected = drift_report(credit_profile, credit_current[columns], method=method).to_dict()
    run = batch.drift_files(
        credit_profile,
        credit_dir,
        columns=columns,
        method=method,
        memory_limit="1MB",  # 256-row chunks: about two dozen of them
        collect_limit=collect_limit,
    )
    assert run.chunk_rows == batch.MIN_CHUNK_ROWS and run.chunks >= 20
    assert_same_report(expected, run.report.to_dict(), exact_tests=method == "test")
    tests = {c["test"] for c in expected["columns"].values()}
    assert tests == (
        {"ks", "chi-square"} if method == "test" else {"wasserstein", "jensen-shannon"}
    )
    # the shifted copies move credit amounts and durations: those drift, others do not
    assert "duration" in run.report.alerts
    assert run.report.columns["credit_amount"].drift_detected
    assert "housing" not in run.report.alerts
    if method == "auto":  # the CDFs cross inside sample intervals: order statistics needed
        assert run.passes >= 2


def test_exact_from_counts_with_ties_missing_values_and_signs(tmp_path):
    """Random data with ties, NaN, ±inf, -0.0 and unseen categories: the KS test (exact and
    asymptotic p-values) and the Wasserstein distance from per-chunk counts, against a large
    reference sample and a small one (many current values between two sample values: the
    order statistics take a histogram pass and a collecting pass)."""
    rng = np.random.default_rng(3)
    cases = [
        (3000, 800, "auto", 0.1),
        (3000, 12_000, "test", 0.0),
        (3000, 12_000, "auto", 0.4),
        (40, 12_000, "auto", 0.2),
    ]
    for size, n, method, shift in cases:
        reference = pd.DataFrame(
            {
                "x": rng.normal(0, 1, size),
                "k": rng.integers(-5, 25, size).astype(float),
                "c": rng.choice(list("abcde"), size),
            }
        )
        baseline = profile(reference)
        current = pd.DataFrame(
            {
                "x": rng.normal(shift, 1.3, n),
                "k": rng.integers(-8, 30, n).astype(float),
                "c": rng.choice(list("abcdefg"), n),
            }
        )
        current.loc[rng.random(n) < 0.05, "x"] = np.nan
        current.loc[:3, "k"] = [np.inf, -np.inf, -0.0, 0.0]
        directory = write_parts(current, tmp_path / f"{size}-{n}-{method}", parts=3, row_group=700)
        expected = drift_report(baseline, current, method=method).to_dict()
        run = batch.drift_files(
            baseline, directory, method=method, memory_limit="1MB", collect_limit=50
        )
        got = run.report.to_dict()
        assert_same_report(expected, got, exact_tests=method == "test" or n <= 1000)
        if size == 40:
            assert run.passes >= 3
        assert got["columns"]["c"]["unseen_categories"] == 2


def test_bad_input_is_refused_with_what_and_why(tmp_path, credit_dir, credit_profile, model_dir):
    with pytest.raises(InvalidInput, match="is not a directory"):
        batch.drift_files(credit_profile, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no Parquet file"):
        batch.drift_files(credit_profile, tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "rows.parquet").write_text("not parquet")
    with pytest.raises(InvalidInput, match="batch input"):
        batch.drift_files(credit_profile, tmp_path / "text")
    with pytest.raises(InvalidInput, match="memory limit 'lots'"):
        batch.drift_files(credit_profile, credit_dir, memory_limit="lots")
    with pytest.raises(InvalidInput, match="lacks baseline column"):
        batch.drift_files(
            {
                **credit_profile,
                "columns": {
                    **credit_profile["columns"],
                    "income": {"kind": "numeric", "edges": [1.0]},
                },
            },
            credit_dir,
        )
    model = load(model_dir)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="exists and is not an empty directory"):
        batch.score_files(model, credit_dir, taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidInput, match="keep names: customer_id"):
        batch.score_files(model, credit_dir, tmp_path / "out", keep=["customer_id"])
