"""Content hash, schema, checks and splits of a table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.data import (
    check_frame,
    check_target,
    coerce_to_schema,
    content_sha256,
    from_parquet_bytes,
    read_table,
    schema_of,
    split,
    to_parquet_bytes,
)

# --- content hash -----------------------------------------------------------------------------


def test_same_content_same_hash_whatever_the_index(german):
    digest = content_sha256(german)
    assert len(digest) == 64
    assert content_sha256(german.copy()) == digest
    assert content_sha256(german.set_axis(range(5000, 6000))) == digest
    shuffled_index = german.set_axis(np.random.default_rng(1).permutation(1000))
    assert content_sha256(shuffled_index) == digest
    assert content_sha256(from_parquet_bytes(to_parquet_bytes(german))) == digest


def test_every_single_changed_cell_changes_the_hash(german):
    small = german.head(30)
    base = content_sha256(small)
    seen = {base}
    for row in range(len(small)):
        for column in small.columns:
            changed = small.copy()
            value = changed.at[row, column]
            changed.at[row, column] = value + 1 if isinstance(value, np.integer) else value + "x"
            digest = content_sha256(changed)
            assert digest != base, (row, column)
            seen.add(digest)
    assert len(seen) == 1 + small.size  # and no two edits collide


def test_structure_is_part_of_the_content(german):
    base = content_sha256(german)
    assert content_sha256(german.rename(columns={"age": "age_years"})) != base
    assert content_sha256(german[list(reversed(german.columns))]) != base
    assert content_sha256(german.astype({"age": "float64"})) != base
    assert content_sha256(german.iloc[::-1]) != base  # row order is part of the content
    assert content_sha256(german.head(999)) != base
    assert content_sha256(german.drop(columns="job")) != base


def test_csv_round_trip_keeps_the_hash(german, tmp_path):
    german.to_csv(tmp_path / "g.csv", index=False)
    assert content_sha256(read_table(tmp_path / "g.csv")) == content_sha256(german)


# --- schema -----------------------------------------------------------------------------------


def test_schema_records_types_nullability_categories_and_ranges(german):
    df = german.assign(
        flag=german["risk"] == 1,
        note=[f"free text {i}" for i in range(len(german))],
        when=pd.Timestamp("2024-01-01"),
    )
    df.loc[3, "purpose"] = None
    columns = schema_of(df)["columns"]
    assert list(columns) == list(df.columns)
    assert columns["age"] == {
        "dtype": "int64",
        "kind": "numeric",
        "nullable": False,
        "min": float(german["age"].min()),
        "max": float(german["age"].max()),
    }
    assert columns["purpose"]["nullable"] is True
    assert columns["purpose"]["categories"] == sorted(german["purpose"].unique())
    assert columns["sex"]["categories"] == ["female", "male"]
    assert columns["flag"]["kind"] == "boolean"
    assert "categories" not in columns["note"]  # more than 50 distinct values: free text
    assert columns["when"]["kind"] == "datetime"


# --- coerce_to_schema -------------------------------------------------------------------------


@pytest.fixture
def schema(german):
    return schema_of(german.drop(columns="risk"))


def test_coerce_names_every_bad_field_in_one_error(german, schema):
    bad = german.drop(columns=["risk", "duration"]).head(5).astype({"age": object})
    bad.loc[1, "age"] = "forty"
    bad.loc[2, "purpose"] = "spaceship"
    bad.loc[3, "housing"] = "castle"
    bad.loc[4, "credit_amount"] = np.nan
    with pytest.raises(InvalidInput) as refused:
        coerce_to_schema(bad, schema)
    message = str(refused.value)
    assert "\n" not in message
    assert refused.value.problems == {
        "duration": "missing column",
        "age": "not numbers: 'forty'",
        "housing": "unseen categories 'castle'",
        "credit_amount": "1 missing value(s), but it had none in training",
        "purpose": "unseen categories 'spaceship'",
    }
    for name, problem in refused.value.problems.items():
        assert f"'{name}': {problem}" in message


def test_coerce_names_json_lists_and_objects_posted_as_values(german, schema):
    # a JSON body can hold a list or an object where a number or a category belongs
    rows = german.drop(columns="risk").head(3).astype({"age": object, "purpose": object})
    rows.at[0, "age"] = [30, 31]
    rows.at[1, "age"] = [30, 31]
    rows.at[2, "purpose"] = {"kind": "car"}
    with pytest.raises(InvalidInput) as refused:
        coerce_to_schema(rows, schema)
    assert refused.value.problems["age"] == "not numbers: [30, 31]"
    assert "{'kind': 'car'}" in refused.value.problems["purpose"]


def test_coerce_returns_schema_order_and_types(german, schema):
    expected = german.drop(columns="risk").head(20)
    scrambled = expected[list(reversed(expected.columns))].assign(extra=1)
    scrambled = scrambled.astype({"age": str, "duration": float, "job": object})
    result = coerce_to_schema(scrambled, schema)
    pd.testing.assert_frame_equal(result, expected)
    fractional = expected.astype({"age": float})
    fractional.loc[0, "age"] = 30.5
    assert coerce_to_schema(fractional, schema)["age"].dtype == "float64"
    holes = expected.copy()
    holes.loc[0, "sex"] = None
    assert coerce_to_schema(holes, schema, allow_missing=True)["sex"].isna().sum() == 1


def test_coerce_booleans_dates_and_empty_input():
    schema = schema_of(
        pd.DataFrame({"ok": [True, False], "at": pd.to_datetime(["2024-01-01"] * 2)})
    )
    good = coerce_to_schema(
        pd.DataFrame({"ok": ["true", "0"], "at": ["2024-02-01", "2024-03-01"]}), schema
    )
    assert good["ok"].tolist() == [True, False]
    assert good["at"].dt.month.tolist() == [2, 3]
    with pytest.raises(InvalidInput) as refused:
        coerce_to_schema(pd.DataFrame({"ok": ["maybe"], "at": ["not a date"]}), schema)
    assert set(refused.value.problems) == {"ok", "at"}
    with pytest.raises(InvalidInput, match="the input has no rows"):
        coerce_to_schema(pd.DataFrame({"ok": [], "at": []}), schema)
    with pytest.raises(InvalidInput, match="the schema has no columns"):
        coerce_to_schema(pd.DataFrame({"ok": [True]}), {"columns": {}})


# --- checks -----------------------------------------------------------------------------------


def test_check_target(german):
    check_target(german, "risk", "binary")
    check_target(german, "credit_amount", "regression")
    check_target(german, "purpose", "multiclass")
    cases = [
        (german, "nope", "binary", "target column 'nope' is not in the data"),
        (german, "risk", "ranking", "unknown problem type 'ranking'"),
        (german.assign(risk=1), "risk", "binary", "single class"),
        (german, "purpose", "binary", "binary target 'purpose' has 8 classes"),
        (german, "risk", "multiclass", "use problem type binary"),
        (german, "purpose", "regression", "regression target 'purpose' is not numeric"),
        (german.assign(risk=german["risk"] == 1), "risk", "regression", "not numeric"),
        (german.assign(age=7), "age", "regression", "is constant"),
        (
            german.assign(risk=german["risk"].where(german.index != 5)),
            "risk",
            "binary",
            "has 1 missing value",
        ),
    ]
    for df, target, problem, message in cases:
        with pytest.raises(InvalidInput, match=message):
            check_target(df, target, problem)


def test_check_frame_names_every_problem(german):
    check_frame(german)
    bad = pd.DataFrame([[1, 2, None, 4]], columns=["a", "a", "empty", 7])
    with pytest.raises(InvalidInput) as refused:
        check_frame(bad)
    message = str(refused.value)
    for part in (
        "duplicate column names: a",
        "column names must be text: 7",
        "all values missing in: empty",
    ):
        assert part in message
    with pytest.raises(InvalidInput, match="the table has no rows"):
        check_frame(german.head(0))
    with pytest.raises(InvalidInput, match="no columns"):
        check_frame(pd.DataFrame(index=range(3)))
    with pytest.raises(InvalidInput, match="expected a DataFrame"):
        check_frame([1, 2])


def test_parquet_refusal_names_the_problem():
    with pytest.raises(InvalidInput, match="cannot store the table as Parquet"):
        to_parquet_bytes(pd.DataFrame({"mixed": [1, "a"]}))


# --- split ------------------------------------------------------------------------------------


def test_split_is_stratified_seeded_and_a_partition(german):
    df = german.reset_index(names="row_id")
    train, holdout = split(df, "risk", test_size=0.25, seed=3)
    assert (len(train), len(holdout)) == (750, 250)
    assert sorted(train["row_id"].tolist() + holdout["row_id"].tolist()) == list(range(1000))
    assert train["row_id"].is_monotonic_increasing and holdout["row_id"].is_monotonic_increasing
    assert list(holdout.index) == list(range(250))
    for cls, n in df["risk"].value_counts().items():
        assert abs((holdout["risk"] == cls).sum() - n * 0.25) <= 1
    again_train, again_holdout = split(df, "risk", test_size=0.25, seed=3)
    pd.testing.assert_frame_equal(again_train, train)
    pd.testing.assert_frame_equal(again_holdout, holdout)
    other = split(df, "risk", test_size=0.25, seed=4)[1]
    assert set(other["row_id"]) != set(holdout["row_id"])


def test_split_stratifies_many_classes_within_one_row(german):
    holdout = split(german, "purpose", test_size=0.3, seed=0)[1]
    for cls, n in german["purpose"].value_counts().items():
        assert abs((holdout["purpose"] == cls).sum() - n * 0.3) <= 1, cls


def test_split_unstratified_for_a_continuous_target(german):
    df = german.assign(score=np.random.default_rng(0).normal(size=len(german)))
    train, holdout = split(df, "score", test_size=0.2, seed=0)
    assert (len(train), len(holdout)) == (800, 200)
    train2, _ = split(df, "risk", test_size=0.2, seed=0, stratify=False)
    assert len(train2) == 800


def test_split_refusals(german):
    lonely = german.assign(purpose=german["purpose"].where(german.index != 0, "yacht"))
    with pytest.raises(InvalidInput, match="class 'yacht' has fewer than 2 rows"):
        split(lonely, "purpose")
    assert len(split(lonely, "purpose", stratify=False)[1]) == 250
    with pytest.raises(InvalidInput, match="target column 'nope' is not in the data"):
        split(german, "nope")
    with pytest.raises(InvalidInput, match="test_size must be between 0 and 1"):
        split(german, "risk", test_size=1.5)
    with pytest.raises(InvalidInput, match="1 missing value"):
        split(german.assign(risk=german["risk"].where(german.index != 9)), "risk")
    with pytest.raises(InvalidInput, match="cannot split 1 row\\(s\\)"):
        split(pd.DataFrame({"y": [0]}), "y", stratify=False)
    with pytest.raises(InvalidInput, match="cannot split 4 row\\(s\\) on 'y'"):
        split(pd.DataFrame({"y": [0, 0, 1, 1]}), "y", test_size=0.25)
