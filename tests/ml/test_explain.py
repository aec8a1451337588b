"""Explanations against shap itself and against exact values: TreeSHAP agreement, additivity,
permutation SHAP on a linear model, adverse-action reason codes, global importance."""

from __future__ import annotations

import dataclasses
import warnings

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.explain import (
    Explainer,
    explain_local,
    global_importance,
    load_reason_table,
    reason_baseline,
    reason_codes,
)
from nexml_ext.ml.model_view import group_matrix, sklearn_tree_view

with warnings.catch_warnings():  # shap's import trips a matplotlib pending deprecation
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap

FEATURES = ["job", "housing", "saving_accounts", "checking_account", "credit_amount", "duration",
            "purpose"]
WITH_PROTECTED = ["sex", "age", *FEATURES]


class Adapter:
    """The LoadedModel attributes explain.py relies on, over a fitted pipeline."""

    def __init__(self, pipeline, input_columns, problem_type="binary", reason_codes=None):
        self.pipeline = pipeline
        self.input_columns = list(input_columns)
        self.problem_type = problem_type
        self.classes = list(pipeline.classes_)
        self.reason_codes = reason_codes or {}

    def validate(self, X):
        missing = [c for c in self.input_columns if c not in X.columns]
        if missing:
            raise InvalidInput(f"missing columns {missing}")
        return X[self.input_columns]

    def predict_proba(self, X):
        return self.pipeline.predict_proba(self.validate(X))

    def score(self, X):
        return self.predict_proba(X)[:, 1]

    def tree_view(self):
        return sklearn_tree_view(self.pipeline, self.input_columns)

    def explain(self, X, **kw):
        return explain_local(self, X, **kw)


def prepare(data, columns, scale=False):
    parts = []
    for c in columns:
        if pd.api.types.is_numeric_dtype(data[c]):
            parts.append((c, StandardScaler() if scale else "passthrough", [c]))
        else:
            parts.append((c, OneHotEncoder(handle_unknown="ignore", sparse_output=False), [c]))
    return ColumnTransformer(parts, verbose_feature_names_out=True)


def fit(data, estimator, columns=FEATURES, select=None, scale=False):
    steps = [("prepare", prepare(data, columns, scale))]
    if select is not None:
        steps.append(("select", select))
    steps.append(("model", estimator))
    return Pipeline(steps).fit(data[columns], data["risk"])


def margin(model, X):
    p = model.score(X)
    return np.log(p) - np.log1p(-p)


def shap_grouped(pipeline, view, X, columns, **kw):
    """shap.TreeExplainer's own values on the encoded rows, summed by hand per input column."""
    encoded = pipeline[:-1].transform(X[columns])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap's LightGBM list-output notice
        explainer = shap.TreeExplainer(pipeline[-1], **kw)
        values = np.asarray(explainer.shap_values(encoded))
    if values.ndim == 3:
        values = values[..., 1]
    return np.column_stack([values[:, view.groups[c]].sum(axis=1) for c in columns])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models; OpenMP threads only spin against each other on a shared 2-core machine."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def hgb(german):
    return Adapter(fit(german, HistGradientBoostingClassifier(max_iter=60, random_state=0)),
                   FEATURES)


@pytest.fixture(scope="module")
def hgb_protected(german):
    estimator = HistGradientBoostingClassifier(max_iter=60, random_state=0)
    return Adapter(fit(german, estimator, WITH_PROTECTED), WITH_PROTECTED,
                   reason_codes=load_reason_table())


@pytest.fixture(scope="module")
def lgbm(german):
    estimator = lightgbm.LGBMClassifier(n_estimators=60, verbose=-1, random_state=0, n_jobs=1)
    return Adapter(fit(german, estimator), FEATURES)


@pytest.fixture(scope="module")
def logistic(german):
    return Adapter(fit(german, LogisticRegression(max_iter=2000), scale=True), FEATURES)


class Served(Adapter):
    """An Adapter that also shows its pipeline as ``estimator``, as LoadedModel does."""

    @property
    def estimator(self):
        return self.pipeline


@pytest.fixture(scope="module")
def linear(german):
    return Served(fit(german, LogisticRegression(max_iter=2000), scale=True), FEATURES)


def linear_shap(pipeline, X, background):
    """shap.LinearExplainer's own values on the encoded rows (background: its mean), summed by
    hand per input column, and its expected value."""
    encode = pipeline[:-1]
    explainer = shap.LinearExplainer(pipeline[-1], encode.transform(background[FEATURES]))
    values = np.asarray(explainer.shap_values(encode.transform(X[FEATURES])))
    names = encode.get_feature_names_out()
    grouped = np.column_stack([values[:, [n.split("__")[0] == c for n in names]].sum(axis=1)
                               for c in FEATURES])
    return grouped, float(np.atleast_1d(explainer.expected_value)[0])


# -- model view ---------------------------------------------------------------------------------


def test_groups_follow_the_transformer_and_the_selector(german):
    pipeline = fit(german, HistGradientBoostingClassifier(max_iter=10),
                   select=SelectKBest(f_classif, k=12))
    view = sklearn_tree_view(pipeline, FEATURES)
    assert view is not None and view.output == "log_odds"
    names = pipeline[:-1].get_feature_names_out()
    assert len(names) == 12
    for column in FEATURES:
        assert view.groups[column] == [i for i, n in enumerate(names)
                                       if n.split("__")[0] == column]
    matrix = group_matrix(view.groups, 12, FEATURES)
    assert matrix.shape == (12, len(FEATURES))
    assert (matrix.sum(axis=1) == 1).all()


def test_views_only_where_shap_reads_the_trees_exactly(german):
    linear = fit(german, LogisticRegression(max_iter=2000), scale=True)
    assert sklearn_tree_view(linear, FEATURES) is None
    native_categories = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0])
    assert sklearn_tree_view(fit(german, native_categories), FEATURES) is None
    one_for_all = Pipeline([
        ("prepare", ColumnTransformer([("all", "passthrough", ["duration", "credit_amount"])])),
        ("model", HistGradientBoostingClassifier(max_iter=5)),
    ]).fit(german[["duration", "credit_amount"]], german["risk"])
    assert sklearn_tree_view(one_for_all, ["duration", "credit_amount"]) is None
    xgb_view = sklearn_tree_view(fit(german, xgboost.XGBClassifier(n_estimators=5, n_jobs=1)), FEATURES)
    assert xgb_view is not None and xgb_view.contributions is not None
    rf_view = sklearn_tree_view(fit(german, RandomForestClassifier(5, max_depth=3)), FEATURES)
    assert rf_view is not None and rf_view.output == "probability"


# -- local explanations: trees ------------------------------------------------------------------


def test_tree_shap_agrees_with_tree_explainer_and_adds_up(german, hgb):
    X = german.iloc[:200]
    explained = explain_local(hgb, X)
    assert explained.method == "tree-shap" and explained.space == "log_odds"
    assert list(explained.values.columns) == FEATURES
    expected = shap_grouped(hgb.pipeline, hgb.tree_view(), X, FEATURES)
    assert np.abs(explained.values.to_numpy() - expected).max() <= 1e-6
    additive = explained.base_values + explained.values.sum(axis=1).to_numpy()
    assert np.abs(additive - margin(hgb, X)).max() <= 1e-6
    assert np.abs(explained.output - margin(hgb, X)).max() <= 1e-6


def test_forest_values_add_up_to_the_probability(german):
    forest = Adapter(fit(german, RandomForestClassifier(30, max_depth=5, random_state=0)),
                     FEATURES)
    X = german.iloc[:100]
    explained = explain_local(forest, X)
    assert explained.space == "probability"
    expected = shap_grouped(forest.pipeline, forest.tree_view(), X, FEATURES)
    assert np.abs(explained.values.to_numpy() - expected).max() <= 1e-6
    additive = explained.base_values + explained.values.sum(axis=1).to_numpy()
    assert np.abs(additive - forest.score(X)).max() <= 1e-6


def test_native_lightgbm_contributions_agree_with_tree_explainer(german, lgbm):
    X = german.iloc[:300]
    explained = explain_local(lgbm, X)
    assert explained.method == "tree-native"
    expected = shap_grouped(lgbm.pipeline, lgbm.tree_view(), X, FEATURES)
    assert np.abs(explained.values.to_numpy() - expected).max() <= 1e-6
    additive = explained.base_values + explained.values.sum(axis=1).to_numpy()
    assert np.abs(additive - margin(lgbm, X)).max() <= 1e-6
    row = explained.to_dict(0)
    assert set(row["contributions"]) == set(FEATURES)
    assert row["output"] == pytest.approx(row["base_value"] + sum(row["contributions"].values()))


def test_native_xgboost_contributions_add_up_within_float32(german):
    model = Adapter(fit(german, xgboost.XGBClassifier(n_estimators=40, n_jobs=1)), FEATURES)
    X = german.iloc[:200]
    explained = explain_local(model, X)
    assert explained.method == "tree-native"
    encoded = model.pipeline[:-1].transform(X[FEATURES])
    raw = model.pipeline[-1].get_booster().predict(xgboost.DMatrix(encoded), output_margin=True)
    # XGBoost computes in float32, so its own margin is only good to ~1e-6 relative.
    assert np.abs(explained.output - raw).max() <= 1e-5


# -- local explanations: permutation ------------------------------------------------------------


def test_permutation_values_are_exact_for_a_linear_margin(german, logistic):
    X, background = german.iloc[:5], german.iloc[500:]
    explained = explain_local(logistic, X, background=background, max_background=30, seed=3)
    assert explained.method == "permutation"
    additive = explained.base_values + explained.values.sum(axis=1).to_numpy()
    assert np.abs(additive - margin(logistic, X)).max() <= 1e-6
    # The log-odds of a logistic regression is linear in the encoded columns, so the exact SHAP
    # value of an input is its coefficients times (its encoding - the background's mean encoding).
    sample = background.iloc[np.sort(np.random.default_rng(3).choice(500, 30, replace=False))]
    encode = logistic.pipeline[:-1]
    weighted = (encode.transform(X[FEATURES]) - encode.transform(sample[FEATURES]).mean(axis=0))
    weighted = weighted * logistic.pipeline[-1].coef_[0]
    groups = {c: [i for i, n in enumerate(encode.get_feature_names_out())
                  if n.split("__")[0] == c] for c in FEATURES}
    exact = np.column_stack([weighted[:, groups[c]].sum(axis=1) for c in FEATURES])
    assert np.abs(explained.values.to_numpy() - exact).max() <= 1e-6


# -- local explanations: linear -----------------------------------------------------------------


def test_linear_values_are_shaps_linear_explainer_and_add_up(german, linear):
    X, background = german.iloc[:60], german.iloc[500:]
    explained = explain_local(linear, X, background=background, max_background=40, seed=3)
    assert explained.method == "linear" and explained.space == "log_odds"
    sample = background.iloc[np.sort(np.random.default_rng(3).choice(500, 40, replace=False))]
    expected, base = linear_shap(linear.pipeline, X, sample)
    assert np.abs(explained.values.to_numpy() - expected).max() <= 1e-9
    assert np.abs(explained.base_values - base).max() <= 1e-9
    additive = explained.base_values + explained.values.sum(axis=1).to_numpy()
    decision = linear.pipeline.decision_function(X[FEATURES])
    assert np.abs(additive - decision).max() <= 1e-9
    assert np.abs(explained.output - margin(linear, X)).max() <= 1e-9
    # the same model without `estimator` is explained by permutation, to the same values
    estimated = explain_local(Adapter(linear.pipeline, FEATURES), X.iloc[:5], background=background,
                              max_background=40, seed=3)
    assert estimated.method == "permutation"
    assert np.abs(estimated.values.to_numpy() - expected[:5]).max() <= 1e-6


def test_linear_values_follow_the_positive_class(german):
    """With classes listed the other way round, the margin (and every value) changes sign."""
    pipeline = fit(german, LogisticRegression(max_iter=2000), scale=True)

    class Reversed(Served):
        def __init__(self):
            super().__init__(pipeline, FEATURES)
            self.classes = self.classes[::-1]

        def score(self, X):
            return 1 - super().score(X)

    X, background = german.iloc[:10], german.iloc[500:600]
    straight = explain_local(Served(pipeline, FEATURES), X, background=background)
    turned = explain_local(Reversed(), X, background=background)
    assert np.allclose(turned.values.to_numpy(), -straight.values.to_numpy(), atol=1e-12)
    assert np.abs(turned.output - margin(Reversed(), X)).max() <= 1e-9


def test_linear_reasons_are_interventional_shap_against_the_baseline(german, linear):
    cutoff = 0.6
    baseline = reason_baseline(linear, german, cutoff)
    X = german.iloc[:120]
    expected, _ = linear_shap(linear.pipeline, X, baseline)
    for attribution in ("baseline-average", "interventional"):
        result = reason_codes(linear, X, baseline=baseline, cutoff=cutoff,
                              max_reasons=len(FEATURES), attribution=attribution)
        denied = 0
        for i, reasons in enumerate(result):
            wanted = sorted((v, f) for f, v in zip(FEATURES, expected[i], strict=True)
                            if v < -1e-9)
            if linear.score(X.iloc[[i]])[0] >= cutoff:
                wanted = []
            assert [(r.contribution, r.feature) for r in reasons] == pytest.approx(wanted)
            denied += bool(reasons)
        assert denied > 20


def test_a_prepared_explainer_gives_the_same_answers(german, linear, hgb):
    """Explainer and Reference, built once (the gateway's way), against the one-call functions;
    an encoding passed in is used as is."""
    X, pool, cutoff = german.iloc[:80], german.iloc[300:], 0.6
    for model in (linear, hgb):
        explainer = Explainer(model)
        rows = model.validate(X)
        background = explainer.reference(pool.iloc[:100])
        baseline = explainer.reference(reason_baseline(model, pool, cutoff))
        local = explainer.local(rows, background=background, encoded=explainer.encode(rows))
        once = explain_local(model, X, background=pool.iloc[:100])
        assert local.method == once.method
        assert np.array_equal(local.values.to_numpy(), once.values.to_numpy())
        reasons = explainer.reasons(rows, model.score(rows), baseline=baseline, cutoff=cutoff,
                                    explanation=local, encoded=explainer.encode(rows))
        assert reasons == reason_codes(model, X, baseline=reason_baseline(model, pool, cutoff),
                                       cutoff=cutoff, explanation=once)
        assert sum(map(bool, reasons)) > 5


def test_non_tree_models_need_a_background(german, logistic):
    with pytest.raises(InvalidInput, match="background"):
        explain_local(logistic, german.iloc[:5])
    with pytest.raises(InvalidInput, match="no rows"):
        explain_local(logistic, german.iloc[:5], background=german.iloc[:0])


def test_multiclass_models_are_refused(german, hgb):
    class Multiclass(Adapter):
        problem_type = "multiclass"

    model = Multiclass(hgb.pipeline, FEATURES)
    model.problem_type = "multiclass"
    with pytest.raises(InvalidInput, match="multiclass"):
        explain_local(model, german.iloc[:5])


# -- adverse-action reason codes ----------------------------------------------------------------


@pytest.mark.parametrize("attribution", ["baseline-average", "interventional"])
def test_denied_applicants_get_reasons_never_protected(german, hgb_protected, attribution):
    model, cutoff = hgb_protected, 0.6
    baseline = reason_baseline(model, german, cutoff)
    X = german.iloc[:300]
    scores = model.score(X)
    everything = reason_codes(model, X, baseline=baseline, cutoff=cutoff,
                              attribution=attribution, max_reasons=len(WITH_PROTECTED))
    named = {r.feature for reasons in everything for r in reasons}
    assert named & {"sex", "age"}, "the model uses sex and age, so unfiltered they do show up"

    result = reason_codes(model, X, baseline=baseline, cutoff=cutoff, protected=["sex", "age"],
                          attribution=attribution)
    assert len(result) == len(X)
    assert (scores < cutoff).sum() > 20
    table = load_reason_table()
    for score, reasons in zip(scores, result, strict=True):
        if score >= cutoff:
            assert reasons == []
            continue
        assert 0 < len(reasons) <= 4
        contributions = [r.contribution for r in reasons]
        assert all(c < 0 for c in contributions)
        assert contributions == sorted(contributions)
        assert not {r.feature for r in reasons} & {"sex", "age"}
        assert all(r.reason == table[r.feature] for r in reasons)


def test_baseline_average_is_the_per_factor_gap_to_the_baseline(german, lgbm):
    cutoff = 0.6
    baseline = reason_baseline(lgbm, german, cutoff)
    X = german.iloc[:200]
    explained = explain_local(lgbm, X)
    result = reason_codes(lgbm, X, baseline=baseline, cutoff=cutoff, explanation=explained,
                          max_reasons=len(FEATURES))
    gap = explained.values - explain_local(lgbm, baseline).values.mean()
    for i, reasons in enumerate(result):
        expected = sorted((v, f) for f, v in gap.iloc[i].items() if v < -1e-9)
        if lgbm.score(X.iloc[[i]])[0] >= cutoff:
            expected = []
        assert [(r.contribution, r.feature) for r in reasons] == pytest.approx(expected)
        assert all(r.reason == r.feature for r in reasons)  # no table anywhere: column names


def test_interventional_reasons_match_tree_explainer_with_baseline(german, lgbm):
    cutoff = 0.6
    baseline = reason_baseline(lgbm, german, cutoff)
    X = german.iloc[:200]
    result = reason_codes(lgbm, X, baseline=baseline, cutoff=cutoff, max_reasons=len(FEATURES),
                          attribution="interventional", reason_table=load_reason_table())
    data = lgbm.pipeline[:-1].transform(baseline[FEATURES])
    expected = shap_grouped(lgbm.pipeline, lgbm.tree_view(), X, FEATURES, data=data,
                            feature_perturbation="interventional")
    denied = 0
    for i, reasons in enumerate(result):
        for r in reasons:
            assert r.contribution == pytest.approx(expected[i, FEATURES.index(r.feature)],
                                                   abs=1e-6)
        denied += bool(reasons)
    assert denied > 20


def test_interventional_reasons_follow_the_views_orientation(german, lgbm):
    """A view may orient native contributions to classes[1] by a sign the booster does not know
    (AutoGluon's positive class); shap's interventional values must be turned the same way."""

    class Flipped(Adapter):
        def score(self, X):
            return 1 - super().score(X)

        def tree_view(self, scale=-1.0):
            view = super().tree_view()
            return dataclasses.replace(view, contributions=lambda m: scale * view.contributions(m))

    flipped, cutoff = Flipped(lgbm.pipeline, FEATURES), 0.4
    baseline = reason_baseline(flipped, german, cutoff)
    X = german.iloc[:150]
    result = reason_codes(flipped, X, baseline=baseline, cutoff=cutoff, max_reasons=7,
                          attribution="interventional")
    data = lgbm.pipeline[:-1].transform(baseline[FEATURES])
    expected = -shap_grouped(lgbm.pipeline, lgbm.tree_view(), X, FEATURES, data=data,
                             feature_perturbation="interventional")
    assert sum(map(bool, result)) > 10
    for i, reasons in enumerate(result):
        for r in reasons:
            assert r.contribution == pytest.approx(expected[i, FEATURES.index(r.feature)],
                                                   abs=1e-6)

    broken = Flipped(lgbm.pipeline, FEATURES)
    broken.tree_view = lambda: Flipped.tree_view(broken, scale=2.0)
    with pytest.raises(InvalidInput, match="baseline-average"):
        reason_codes(broken, X, baseline=baseline, cutoff=cutoff, attribution="interventional")


def test_permutation_model_reasons(german, logistic):
    cutoff = 0.6
    baseline = reason_baseline(logistic, german, cutoff, min_rows=20)
    X = german.iloc[:20]
    result = reason_codes(logistic, X, baseline=baseline, cutoff=cutoff, max_background=20,
                          reason_table={"checking_account": "Insufficient checking balance"})
    scores = logistic.score(X)
    assert all((s < cutoff) == bool(r) for s, r in zip(scores, result, strict=True))
    for reasons in result:
        assert all(r.contribution < 0 for r in reasons)
        for r in reasons:
            assert r.reason == ("Insufficient checking balance"
                                if r.feature == "checking_account" else r.feature)


def test_reason_baseline_is_at_or_just_above_the_cutoff(german, hgb):
    scores = hgb.score(german)
    baseline = reason_baseline(hgb, german, 0.6, band=0.01, min_rows=50)
    chosen = hgb.score(baseline)
    assert len(baseline) >= 50
    assert chosen.min() >= 0.6
    # the band widened only as far as needed: nothing left out lies below the highest chosen
    outside = scores[(scores >= 0.6) & ~german.index.isin(baseline.index)]
    assert (outside > chosen.max()).all()
    with pytest.raises(InvalidInput, match="no applicant"):
        reason_baseline(hgb, german, 1.01)


def test_bad_reason_inputs(german, hgb):
    with pytest.raises(InvalidInput, match="no reason-code table"):
        load_reason_table("no_such_portfolio")
    with pytest.raises(InvalidInput):
        load_reason_table("../secrets")
    with pytest.raises(InvalidInput, match="attribution"):
        reason_codes(hgb, german.iloc[:5], baseline=german, cutoff=0.5, attribution="vibes")
    with pytest.raises(InvalidInput, match="baseline"):
        reason_codes(hgb, german.iloc[:50], baseline=german.iloc[:0], cutoff=0.99)


def test_the_german_reason_table_covers_inputs_and_no_protected_attribute():
    table = load_reason_table()
    assert set(FEATURES) <= set(table)
    assert not {"sex", "age"} & set(table)
    assert table["checking_account"] == "Insufficient balance in checking account"


# -- global importance --------------------------------------------------------------------------


def test_global_importance_ranks_a_planted_feature_first(german):
    rng = np.random.default_rng(0)
    data = german.assign(planted=german["risk"] * 2.0 + rng.normal(0, 0.5, len(german)))
    columns = [*FEATURES, "planted"]
    model = Adapter(fit(data, HistGradientBoostingClassifier(max_iter=40, random_state=0),
                        columns), columns)
    table = global_importance(model, data, data["risk"], n_repeats=3)
    assert list(table.columns) == ["feature", "mean_abs_shap", "permutation_importance_mean",
                                   "permutation_importance_std"]
    assert table["feature"].iloc[0] == "planted"
    assert table.set_index("feature")["permutation_importance_mean"].idxmax() == "planted"
    assert np.isnan(global_importance(model, data.iloc[:50])["permutation_importance_mean"]).all()


def test_global_importance_of_a_non_tree_model(german, logistic):
    table = global_importance(logistic, german.iloc[:200], german["risk"].iloc[:200],
                              background=german.iloc[500:520], n_repeats=2, shap_rows=10)
    assert set(table["feature"]) == set(FEATURES)
    assert (table["mean_abs_shap"] >= 0).all()
