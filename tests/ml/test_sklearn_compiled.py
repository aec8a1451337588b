"""The compiled small-batch path of scikit-learn pipelines: encodings and scores equal to the
pipeline's own by ``==``, on every German-credit row scored alone and on probe rows with missing
values and unseen categories; what it cannot compile falls back to scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import OneHotEncoder

from nexml_ext.errors import InvalidInput
from nexml_ext.ml import artifact
from nexml_ext.ml.artifact_metadata import schema_columns
from nexml_ext.ml.data import coerce_to_schema, schema_of
from nexml_ext.ml.preprocess import PreprocessSpec, build_pipeline
from nexml_ext.ml.served_model import ServedModel
from nexml_ext.ml.sklearn_compiled import (
    MAX_ROWS,
    CompiledPipeline,
    NotCompilable,
    compile_pipeline,
    conforming_records,
    conforming_rows,
    probe_rows,
    verify,
)

ORDINAL = PreprocessSpec(encode="ordinal", impute_numeric="constant",
                         impute_categorical="constant", clip_quantiles=None, select_k=8)

CASES = {
    "logistic": (lambda: LogisticRegression(max_iter=2000), "binary", PreprocessSpec()),
    "boosting": (lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
                 "binary", PreprocessSpec()),
    "forest": (lambda: RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1),
               "binary", PreprocessSpec()),
    "extra-trees-ordinal": (
        lambda: ExtraTreesClassifier(n_estimators=30, random_state=0, n_jobs=1), "binary", ORDINAL
    ),
    "ridge": (lambda: Ridge(alpha=3.0), "regression", PreprocessSpec(scale=False)),
    "boosting-regression": (
        lambda: HistGradientBoostingRegressor(max_iter=40, random_state=0), "regression",
        PreprocessSpec(),
    ),
    "forest-regression": (
        lambda: RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0, n_jobs=1),
        "regression", ORDINAL,
    ),
}


def features_and_target(german: pd.DataFrame, problem_type: str) -> tuple[pd.DataFrame, str]:
    data = german.drop(columns=["sex"]).assign(owner=german["housing"] == "own")  # a boolean
    target = "risk" if problem_type == "binary" else "credit_amount"
    return data.drop(columns=[target]), target


@pytest.fixture(scope="module", params=list(CASES))
def case(request, german, tmp_path_factory):
    make, problem_type, spec = CASES[request.param]
    X, target = features_and_target(german, problem_type)
    pipeline = build_pipeline(spec, X, make(), problem_type=problem_type)
    pipeline.fit(X, german[target])
    directory = artifact.save_sklearn(
        pipeline, tmp_path_factory.mktemp(request.param) / "model", problem_type=problem_type,
        target=target, input_schema=schema_of(X),
    )
    model = artifact.load(directory)
    return request.param, model, pipeline, X


def expected_outputs(name, pipeline, encoded):
    """The final estimator's own outputs on the pipeline's encoding: trees row by row are the
    batch's rows (each row walks and sums alone); a linear product is computed per row shape."""
    final = pipeline.steps[-1][1]
    call = final.predict_proba if hasattr(final, "predict_proba") else final.predict
    if name in ("logistic", "ridge"):
        return np.concatenate([call(encoded[i : i + 1]) for i in range(len(encoded))])
    return call(encoded)


def test_every_row_alone_equals_the_pipeline(case):
    name, model, pipeline, X = case
    compiled = model.compiled
    assert isinstance(compiled, CompiledPipeline), f"{name} did not compile"
    rows = model.validate(X)
    encoded = np.asarray(pipeline[:-1].transform(rows), dtype=float)
    for i in (0, 1, 500, 999):  # the pipeline's own one-row encoding is its batch's row
        assert np.array_equal(pipeline[:-1].transform(rows.iloc[[i]]), encoded[i : i + 1])
    want = expected_outputs(name, pipeline, encoded)
    ours_encoded, ours_output = [], []
    for i in range(len(rows)):
        enc, out = compiled.score(rows.iloc[[i]])
        ours_encoded.append(enc)
        ours_output.append(out)
    assert (np.concatenate(ours_encoded) == encoded).all()
    assert (np.concatenate(ours_output) == want).all()
    # the artifact's own scoring, one row at a time, is the pipeline's
    column = list(pipeline.classes_).index(model.classes[1]) if model.classes else None
    whole = want if column is None else want[:, column]
    alone = np.array([model.score(rows.iloc[[i]])[0] for i in range(0, len(rows), 7)])
    assert (alone == whole[::7]).all()


def test_probe_rows_with_missing_values_and_unseen_categories(case):
    name, model, pipeline, X = case
    columns = schema_columns(model.input_schema)
    probes = probe_rows(columns, list(columns))
    assert probes.isna().any().all()  # every column has missing values
    known = set(columns["purpose"]["categories"])
    assert any(isinstance(v, str) and v not in known for v in probes["purpose"])  # unseen
    encoded = np.asarray(pipeline[:-1].transform(probes), dtype=float)
    want = expected_outputs(name, pipeline, encoded)
    for i in range(0, len(probes), 3):
        enc, out = model.compiled.score(probes.iloc[[i]])
        assert (enc == encoded[i : i + 1]).all()
        assert (out == want[i : i + 1]).all()
    batch = probes.iloc[:MAX_ROWS]
    enc, out = model.compiled.score(batch)
    assert (enc == encoded[:MAX_ROWS]).all()
    if name not in ("logistic", "ridge"):
        assert (out == want[:MAX_ROWS]).all()


def test_served_scores_and_encoding_are_the_pipelines(case):
    name, model, pipeline, X = case
    served = ServedModel(model)
    rows = model.validate(X.iloc[:30])
    for i in (0, 3, 17):
        scores, encoded = served.score(rows.iloc[[i]])
        assert np.array_equal(scores, model.score(rows.iloc[[i]]))
        if encoded is not None:  # handed to the explainer: the pipeline's own encoding
            assert np.array_equal(encoded, pipeline[:-1].transform(rows.iloc[[i]]))
    scores, _ = served.score(rows)
    assert np.array_equal(scores, model.score(rows))


def test_large_batches_stay_on_scikit_learn(case):
    name, model, pipeline, X = case
    rows = model.validate(X.iloc[: MAX_ROWS + 1])
    assert model.compiled.score(rows) is None
    if model.problem_type == "binary":
        column = list(pipeline.classes_).index(model.classes[1])
        assert np.array_equal(model.score(rows), pipeline.predict_proba(rows)[:, column])
    else:
        assert np.array_equal(model.score(rows), pipeline.predict(rows))


def test_an_unknown_estimator_falls_back(german, tmp_path):
    X, target = features_and_target(german, "binary")
    pipeline = build_pipeline(PreprocessSpec(), X, GaussianNB(), problem_type="binary")
    pipeline.fit(X, german[target])
    with pytest.raises(NotCompilable, match="GaussianNB"):
        CompiledPipeline(pipeline)
    directory = artifact.save_sklearn(pipeline, tmp_path / "nb", problem_type="binary",
                                      target=target, input_schema=schema_of(X))
    model = artifact.load(directory)
    assert model.compiled is None
    rows = model.validate(X.iloc[:5])
    assert np.array_equal(model.score(rows.iloc[[2]]), pipeline.predict_proba(rows.iloc[[2]])[:, 1])
    scores, _ = ServedModel(model).score(rows)
    assert np.array_equal(scores, pipeline.predict_proba(rows)[:, 1])


def test_an_option_it_does_not_replicate_is_declined(german):
    X, target = features_and_target(german, "binary")
    pipeline = build_pipeline(PreprocessSpec(), X, LogisticRegression(max_iter=500),
                              problem_type="binary")
    for _, transformer, _ in pipeline.steps[0][1].transformers:
        encoder = transformer.steps[-1][1]
        if isinstance(encoder, OneHotEncoder):
            encoder.set_params(drop="first")  # dropped categories: not replicated
    pipeline.fit(X, german[target])
    with pytest.raises(NotCompilable, match="one-hot options"):
        CompiledPipeline(pipeline)


def test_a_difference_on_the_probes_is_declined(german):
    X, target = features_and_target(german, "binary")
    pipeline = build_pipeline(PreprocessSpec(), X, RandomForestClassifier(
        n_estimators=5, random_state=0, n_jobs=1), problem_type="binary")
    pipeline.fit(X, german[target])
    probes = probe_rows(schema_columns(schema_of(X)), list(X.columns))
    assert isinstance(compile_pipeline(pipeline, probes), CompiledPipeline)
    # a compiled copy whose scaler is off by one for one column: the probe check refuses it
    compiled = CompiledPipeline(pipeline)
    numeric = next(s for s in compiled.steps if getattr(s, "mean", None) is not None)
    numeric.mean += 1.0
    with pytest.raises(NotCompilable, match="encoding differs"):
        verify(compiled, pipeline, probes)


def test_a_clean_small_batch_skips_coercion_with_the_same_result(german):
    X, _ = features_and_target(german, "binary")
    schema = schema_of(X)
    posted = pd.DataFrame(X.iloc[[3, 10]].to_dict("records")).assign(extra="dropped")
    clean = conforming_rows(posted, schema)
    full = coerce_to_schema(posted, schema)
    assert clean is not None and "extra" not in clean.columns
    pd.testing.assert_frame_equal(clean, full)
    assert clean.dtypes.equals(full.dtypes)


@pytest.mark.parametrize("change", [
    {"purpose": "spaceship"},  # an unseen category
    {"duration": "twelve"},  # not a number
    {"duration": 12.5},  # a fraction in an integer column
    {"job": None},  # a missing value where training had none
    {"housing": 3},  # a number in a text column
])
def test_anything_to_coerce_or_refuse_takes_the_full_check(german, tmp_path, change):
    X, _ = features_and_target(german, "binary")
    schema = schema_of(X)
    posted = pd.DataFrame([{**X.iloc[0].to_dict(), **change}])
    assert conforming_rows(posted, schema) is None
    assert conforming_rows(pd.DataFrame(X.iloc[: MAX_ROWS + 1]), schema) is None
    try:
        expected = coerce_to_schema(posted, schema)
    except InvalidInput as error:  # the model's validate refuses with the very same message
        directory = artifact.save_sklearn(
            build_pipeline(PreprocessSpec(), X, LogisticRegression(max_iter=300),
                           problem_type="binary").fit(X, german["risk"]),
            tmp_path / "m", problem_type="binary", target="risk", input_schema=schema,
        )
        with pytest.raises(InvalidInput) as raised:
            artifact.load(directory).validate(posted)
        assert str(raised.value) == str(error)
    else:
        assert change == {"duration": 12.5} and expected["duration"].dtype == float


MIXED = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, 1.5, -2.0], "flag": [True, False, True],
                      "kind": ["a", "b", "a"]})


@pytest.mark.parametrize("change, taken", [
    ({}, True),
    ({"extra": 5}, True),  # not in the schema: dropped, as from the frame
    ({"x": float("inf")}, True),  # the frame's check takes it too (encoding declines it later)
    ({"n": True}, False),
    ({"n": 1.0}, False),
    ({"n": 2**63}, False),
    ({"n": "1"}, False),
    ({"x": 1}, False),  # an int in a float column: the frame path coerces it
    ({"x": float("nan")}, False),
    ({"x": None}, False),
    ({"flag": 1}, False),
    ({"flag": "true"}, False),
    ({"kind": "z"}, False),  # an unseen category
    ({"kind": 1}, False),
    ({"kind": None}, False),
    ({"n": None}, False),
])
def test_records_are_taken_only_as_the_frame_they_make_would_be(change, taken):
    schema = schema_of(MIXED)
    records = MIXED.to_dict("records")
    records[1] = {**records[1], **change}
    got = conforming_records(records, schema)
    frame = conforming_rows(pd.DataFrame(records), schema)
    assert (got is not None) == taken
    if taken:  # the frame check agrees, and the values are what its columns hold
        assert frame is not None and list(got) == list(frame.columns)
        for name, values in got.items():
            expected = frame[name].tolist()
            assert values == expected and list(map(type, values)) == list(map(type, expected))


def test_records_missing_a_column_or_too_many_are_left_to_the_frame():
    schema = schema_of(MIXED)
    records = MIXED.to_dict("records")
    assert conforming_records([{k: v for k, v in records[0].items() if k != "x"}], schema) is None
    assert conforming_records(records * (MAX_ROWS // 3 + 1), schema) is None
    assert conforming_records([], schema) is None
    assert conforming_records([list(records[0].values())], schema) is None  # not mappings


def test_encoding_columns_equals_encoding_the_frame(case):
    _, model, _, X = case
    compiled = model.compiled
    rows = model.validate(X.iloc[:MAX_ROWS])
    by_frame = compiled.encode(rows)
    by_columns = compiled.encode_columns([rows[c].tolist() for c in compiled.columns], len(rows))
    assert by_frame is not None and np.array_equal(by_frame, by_columns)
