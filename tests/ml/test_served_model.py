"""ServedModel, the model on the gateway's request path: each row encoded once for its score and
its explanation, the scores exactly LoadedModel's, the references prepared once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from nexml_ext.errors import InvalidInput
from nexml_ext.ml import artifact
from nexml_ext.ml.data import schema_of
from nexml_ext.ml.explain import explain_local, reason_baseline, reason_codes
from nexml_ext.ml.preprocess import PreprocessSpec, build_pipeline
from nexml_ext.ml.served_model import ServedModel

CUTOFF = 0.6


def saved(german, tmp_path, estimator, problem_type="binary", target="risk"):
    """A real artifact of the project's pipeline convention, saved and loaded back."""
    features = german.drop(columns=["risk", "sex", "age"] + ([] if target == "risk" else [target]))
    pipeline = build_pipeline(PreprocessSpec(), features, estimator, problem_type=problem_type)
    pipeline.fit(features, german[target])
    directory = artifact.save_sklearn(
        pipeline, tmp_path / type(estimator).__name__, problem_type=problem_type, target=target,
        input_schema=schema_of(features),
    )
    return artifact.load(directory)


@pytest.fixture(scope="module")
def forest(german, tmp_path_factory):
    return saved(german, tmp_path_factory.mktemp("forest"),
                 RandomForestClassifier(n_estimators=40, max_depth=6, random_state=0, n_jobs=1))


@pytest.fixture(scope="module")
def logistic(german, tmp_path_factory):
    return saved(german, tmp_path_factory.mktemp("logistic"), LogisticRegression(max_iter=2000))


@pytest.mark.parametrize("name, kind", [("forest", "tree"), ("logistic", "linear")])
def test_scores_are_the_models_own_and_explanations_the_same(request, german, name, kind):
    model = request.getfixturevalue(name)
    served = ServedModel(model)
    assert served.explainer is not None and served.explainer.kind == kind
    rows = model.validate(german.iloc[:200])
    scores, encoded = served.score(rows)
    assert np.array_equal(scores, model.score(rows))  # bit for bit
    assert encoded is not None and encoded.shape[0] == len(rows)
    one, _ = served.score(rows.iloc[[7]])
    assert np.array_equal(one, model.score(rows.iloc[[7]]))

    loads = []

    def pool():
        loads.append(1)
        return german

    background, baseline = served.references(CUTOFF, pool)
    assert served.references(CUTOFF, pool)[1] is baseline and len(loads) == 1  # once per cutoff
    assert (background is None) == (kind == "tree")
    local = served.explainer.local(rows, background=background, encoded=encoded)
    once = explain_local(model, rows, background=german.sample(100, random_state=0))
    assert np.allclose(local.values.to_numpy(), once.values.to_numpy(), atol=1e-12)
    reasons = served.explainer.reasons(rows, scores, baseline=baseline, cutoff=CUTOFF,
                                       explanation=local, encoded=encoded)
    expected = reason_codes(model, rows, baseline=reason_baseline(model, german, CUTOFF),
                            cutoff=CUTOFF)
    assert [[(r.feature, round(r.contribution, 9)) for r in row] for row in reasons] == [
        [(r.feature, round(r.contribution, 9)) for r in row] for row in expected
    ]
    assert sum(map(bool, reasons)) > 20


@pytest.mark.parametrize("name", ["forest", "logistic"])
def test_records_score_and_explain_as_the_frame_they_make(request, german, name):
    model = request.getfixturevalue(name)
    served = ServedModel(model)
    posted = german.drop(columns=["risk"]).iloc[:40]  # sex and age: not inputs, dropped
    records = json.loads(posted.to_json(orient="records"))  # as a JSON body gives them
    assert served.score_records(records[:1]) is None  # until a batch shows the encoding shared
    served.score(model.validate(posted.iloc[:1]))
    background, baseline = served.references(CUTOFF, lambda: german)
    for batch in (records[:1], records[1:17], records[17:40]):
        taken = served.score_records(batch)
        assert taken is not None
        values, scores, encoded = taken
        rows = model.validate(pd.DataFrame(batch))
        expected_scores, expected_encoded = served.score(rows)
        assert np.array_equal(scores, expected_scores)  # bit for bit
        assert np.array_equal(encoded, expected_encoded)
        assert values == {c: rows[c].tolist() for c in rows.columns}
        explainer = served.explainer
        local = explainer.local(batch, background=background, encoded=encoded)
        expected = explainer.local(rows, background=background, encoded=expected_encoded)
        assert np.array_equal(local.values.to_numpy(), expected.values.to_numpy())
        for explanation in (local, None):  # reasons with the explanation, and without it
            got = explainer.reasons(batch, scores, baseline=baseline, cutoff=CUTOFF,
                                    explanation=explanation, encoded=encoded)
            want = explainer.reasons(rows, scores, baseline=baseline, cutoff=CUTOFF,
                                     explanation=None if explanation is None else expected,
                                     encoded=expected_encoded)
            assert got == want
    unseen = {**records[0], "purpose": "spaceship"}
    assert served.score_records([unseen]) is None  # left to validate, which names the field


def test_regression_scores_are_the_predictions(german, tmp_path):
    model = saved(german, tmp_path, Ridge(), problem_type="regression", target="credit_amount")
    served = ServedModel(model)
    rows = model.validate(german.iloc[:50])
    scores, encoded = served.score(rows)
    assert np.array_equal(scores, model.score(rows))
    assert served.explainer.kind == "linear" and encoded is not None


def test_references_need_an_approved_applicant(german, forest):
    with pytest.raises(InvalidInput, match="no applicant"):
        ServedModel(forest).references(1.01, lambda: german)
