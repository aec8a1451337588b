"""Declared preprocessing: one transformer per column, fitted parameters checked against pandas."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.preprocess import (
    PreprocessSpec,
    build_pipeline,
    build_preprocessor,
    column_kinds,
    describe_fitted,
)

NUMERIC = ["job", "credit_amount", "duration"]
CATEGORICAL = ["housing", "saving_accounts", "checking_account", "purpose"]


@pytest.fixture(scope="module")
def inputs(german):
    return german.drop(columns=["risk", "sex", "age"])


@pytest.fixture(scope="module")
def with_gaps(inputs):
    """German inputs with missing values in a numeric and a categorical column."""
    gappy = inputs.copy()
    rng = np.random.default_rng(3)
    gappy.loc[rng.choice(len(gappy), 60, replace=False), "duration"] = np.nan
    gappy.loc[rng.choice(len(gappy), 40, replace=False), "purpose"] = None
    return gappy


def entries(description, step, column):
    return [e for e in description if e["step"] == step and e["columns"] == [column]]


def test_one_transformer_per_input_column_named_after_it(inputs):
    pipeline = build_preprocessor(PreprocessSpec(), inputs)
    assert [name for name, _ in pipeline.steps] == ["prepare"]
    prepare = pipeline.named_steps["prepare"]
    assert isinstance(prepare, ColumnTransformer)
    assert prepare.verbose_feature_names_out is True
    assert [(name, cols) for name, _, cols in prepare.transformers] == [
        (c, [c]) for c in inputs.columns
    ]
    prepare = pipeline.fit(inputs).named_steps["prepare"]
    outputs = prepare.get_feature_names_out()
    for column in inputs.columns:  # every encoded column maps back to exactly one input
        assert all(n.startswith(f"{column}__") for n in outputs[prepare.output_indices_[column]])
    assert column_kinds(inputs) == {c: "numeric" if c in NUMERIC else "categorical"
                                    for c in inputs.columns}


def test_fitted_clip_bounds_equal_training_quantiles(inputs):
    spec = PreprocessSpec(clip_quantiles=(0.05, 0.95), scale=False)
    prepare = build_preprocessor(spec, inputs).fit(inputs).named_steps["prepare"]
    transformed = prepare.transform(inputs)
    for column in NUMERIC:
        clip = prepare.named_transformers_[column].named_steps["clip"]
        assert clip.lower_[0] == pytest.approx(inputs[column].quantile(0.05))
        assert clip.upper_[0] == pytest.approx(inputs[column].quantile(0.95))
        values = transformed[:, prepare.output_indices_[column]].ravel()
        assert values.min() == pytest.approx(inputs[column].quantile(0.05))
        assert values.max() == pytest.approx(inputs[column].quantile(0.95))
    unclipped = build_preprocessor(PreprocessSpec(clip_quantiles=None), inputs)
    steps = unclipped.named_steps["prepare"].transformers[0][1].named_steps
    assert "clip" not in steps


def test_imputation_values_equal_pandas_median_and_mode(with_gaps):
    description = describe_fitted(build_preprocessor(None, with_gaps).fit(with_gaps))
    [duration] = entries(description, "impute", "duration")
    assert duration["params"]["strategy"] == "median"
    assert duration["params"]["value"] == pytest.approx(with_gaps["duration"].median())
    [purpose] = entries(description, "impute", "purpose")
    assert purpose["params"]["value"] == with_gaps["purpose"].mode()[0]
    mean_spec = PreprocessSpec(impute_numeric="mean", impute_categorical="constant")
    description = describe_fitted(build_preprocessor(mean_spec, with_gaps).fit(with_gaps))
    assert entries(description, "impute", "duration")[0]["params"]["value"] == pytest.approx(
        with_gaps["duration"].mean()
    )
    assert entries(description, "impute", "purpose")[0]["params"]["value"] == "missing"


def test_describe_fitted_is_json_and_holds_every_fitted_parameter(with_gaps, german):
    pipeline = build_pipeline(
        PreprocessSpec(), with_gaps, LogisticRegression(max_iter=1000), problem_type="binary"
    ).fit(with_gaps, german["risk"])
    description = describe_fitted(pipeline)
    assert json.loads(json.dumps(description, allow_nan=False)) == description

    filled = with_gaps["duration"].fillna(with_gaps["duration"].median())
    low, high = filled.quantile(0.01), filled.quantile(0.99)
    [clip] = entries(description, "clip", "duration")
    assert (clip["params"]["lower"], clip["params"]["upper"]) == pytest.approx((low, high))
    [scale] = entries(description, "scale", "duration")
    clipped = filled.clip(low, high)
    assert scale["params"]["mean"] == pytest.approx(clipped.mean())
    assert scale["params"]["scale"] == pytest.approx(clipped.std(ddof=0))
    assert scale["params"]["outputs"] == ["duration__duration"]
    [encode] = entries(description, "encode", "purpose")
    assert encode["params"]["categories"] == sorted(with_gaps["purpose"].dropna().unique())
    assert encode["params"]["outputs"] == [f"purpose__purpose_{c}"
                                           for c in encode["params"]["categories"]]
    model = description[-1]
    assert model["step"] == "model" and model["params"]["estimator"] == "LogisticRegression"
    assert len(model["columns"]) == len(pipeline[:-1].get_feature_names_out())


def test_unseen_category_at_transform_time_encodes_as_zeros(inputs):
    prepare = build_preprocessor(None, inputs).fit(inputs).named_steps["prepare"]
    row = inputs.head(1).assign(purpose="spaceship")
    encoded = prepare.transform(row)[0, prepare.output_indices_["purpose"]]
    assert not encoded.any()
    ordinal = build_preprocessor(PreprocessSpec(encode="ordinal"), inputs).fit(inputs)
    prepare = ordinal.named_steps["prepare"]
    assert prepare.transform(row)[0, prepare.output_indices_["purpose"]].tolist() == [-1]


def test_select_k_keeps_k_features(inputs, german):
    pipeline = build_pipeline(
        PreprocessSpec(select_k=5), inputs, LogisticRegression(max_iter=1000),
        problem_type="binary",
    ).fit(inputs, german["risk"])
    assert [name for name, _ in pipeline.steps] == ["prepare", "select", "model"]
    assert pipeline.named_steps["select"].get_support().sum() == 5
    assert pipeline.named_steps["model"].coef_.shape == (1, 5)
    [select] = [e for e in describe_fitted(pipeline) if e["step"] == "select"]
    assert len(select["params"]["selected"]) == 5
    assert describe_fitted(pipeline)[-1]["columns"] == select["params"]["selected"]


def test_text_category_and_boolean_dtypes_are_served_alike(inputs, german):
    typed = inputs.assign(
        purpose=inputs["purpose"].astype("category"),
        housing=inputs["housing"].astype("string"),
        guarantor=inputs["job"] > 1,
    )
    typed.loc[0, "housing"] = pd.NA
    pipeline = build_pipeline(
        None, typed, LogisticRegression(max_iter=1000), problem_type="binary"
    ).fit(typed, german["risk"])
    as_object = typed.astype({"purpose": object, "housing": object})
    restored = pickle.loads(pickle.dumps(pipeline))
    assert np.allclose(restored.predict_proba(as_object), pipeline.predict_proba(typed))
    assert column_kinds(typed)["guarantor"] == "boolean"


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"encode": "hashing"}, "encode"),
        ({"impute_numeric": "zero"}, "impute_numeric"),
        ({"clip_quantiles": (0.9, 0.1)}, "clip_quantiles"),
        ({"select_k": 0}, "select_k"),
    ],
)
def test_spec_refuses_unknown_choices(kwargs, problem):
    with pytest.raises(InvalidInput, match=problem):
        PreprocessSpec(**kwargs)


def test_unusable_columns_are_refused_by_name(inputs):
    dated = inputs.assign(opened=pd.Timestamp("2024-01-01"))
    with pytest.raises(InvalidInput, match="column 'opened' has type datetime64"):
        build_preprocessor(None, dated)
    mixed = inputs.assign(branch=["north", 3] * (len(inputs) // 2))
    with pytest.raises(InvalidInput, match="column 'branch' mixes types"):
        build_preprocessor(None, mixed)
    with pytest.raises(InvalidInput, match="'a__b'"):
        build_preprocessor(None, inputs.rename(columns={"job": "a__b"}))
    with pytest.raises(InvalidInput, match="clustering"):
        build_preprocessor(PreprocessSpec(select_k=3), inputs, problem_type="clustering")
