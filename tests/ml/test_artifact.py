"""Model artifacts: round trips through the store, the AutoGluon fast path's exactness, schema
validation, and refusal of tampered artifacts before anything is unpickled.

One small AutoGluon predictor and one scikit-learn pipeline are trained once for the module.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from nexml_ext.errors import IntegrityError, InvalidInput
from nexml_ext.ml import artifact
from nexml_ext.ml.data import schema_of
from nexml_ext.store.artifacts import ArtifactStore

TARGET = "risk"
PROTECTED = ["sex", "age"]
HYPERPARAMETERS = {"GBM": {}, "CAT": {}, "XT": {}, "LR": {}}
REASONS = {"duration": "Loan duration is long", "checking_account": "Checking account status"}


@pytest.fixture(scope="module")
def inputs(german) -> pd.DataFrame:
    return german.drop(columns=[TARGET, *PROTECTED])


@pytest.fixture(scope="module")
def schema(inputs) -> dict:
    return schema_of(inputs)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ArtifactStore:
    return ArtifactStore(str(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def pipeline(german, inputs):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c for c in inputs.columns if pd.api.types.is_numeric_dtype(inputs[c])]
    prepare = ColumnTransformer(
        [(c, "passthrough", [c]) for c in numeric]
        + [(c, OneHotEncoder(handle_unknown="ignore"), [c]) for c in inputs.columns
           if c not in numeric]
    )
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    return Pipeline([("prepare", prepare), ("model", model)]).fit(inputs, german[TARGET])


@pytest.fixture(scope="module")
def sklearn_dir(pipeline, schema, tmp_path_factory) -> Path:
    return artifact.save_sklearn(
        pipeline, tmp_path_factory.mktemp("sk") / "artifact", problem_type="binary",
        target=TARGET, input_schema=schema, metrics={"roc_auc": 0.8},
        lineage={"datasets": ["german-credit:1"]}, reason_codes=REASONS,
    )


@pytest.fixture(scope="module")
def predictor(german, tmp_path_factory):
    from autogluon.tabular import TabularPredictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = TabularPredictor(
            label=TARGET, problem_type="binary", eval_metric="roc_auc", verbosity=0,
            path=str(tmp_path_factory.mktemp("ag") / "predictor"),
        ).fit(german.drop(columns=PROTECTED), time_limit=30, hyperparameters=HYPERPARAMETERS)
    return fitted


@pytest.fixture(scope="module")
def ag_dir(predictor, schema, tmp_path_factory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return artifact.save_autogluon(
            predictor, tmp_path_factory.mktemp("agsave") / "artifact", problem_type="binary",
            target=TARGET, input_schema=schema, lineage={"datasets": ["german-credit:1"]},
            reason_codes=REASONS,
        )


@pytest.fixture(scope="module")
def ag_stored(ag_dir, store):
    return store.put_directory(ag_dir, "models/credit-ag/1")


@pytest.fixture(scope="module")
def ag_model(ag_stored, store):
    return artifact.load_verified(store, ag_stored.uri, ag_stored.sha256)


# ---- round trips ---------------------------------------------------------------------------------


def test_sklearn_round_trip_gives_identical_predictions(sklearn_dir, store, pipeline, german):
    stored = store.put_directory(sklearn_dir, "models/credit-sk/1")
    loaded = artifact.load_verified(store, stored.uri, stored.sha256)

    assert np.array_equal(loaded.predict_proba(german), pipeline.predict_proba(german))
    assert np.array_equal(loaded.predict(german), pipeline.predict(german))
    assert np.array_equal(loaded.score(german), pipeline.predict_proba(german)[:, 1])
    assert loaded.classes == [0, 1] and list(loaded.classes_) == [0, 1]
    assert loaded.reason_codes == REASONS


def test_autogluon_round_trip_gives_the_predictors_predictions(ag_model, predictor, german):
    served = ag_model.fast_path["model"]
    expected = predictor.predict_proba(german, model=served, as_multiclass=True)

    assert np.array_equal(ag_model.predict_proba(german), expected[[0, 1]].to_numpy())
    assert np.array_equal(ag_model.predict(german), predictor.predict(german, model=served))


def test_clone_holds_only_the_served_model(ag_model):
    from autogluon.tabular import TabularPredictor

    clone = TabularPredictor.load(str(ag_model.directory / artifact.AUTOGLUON_PREDICTOR),
                                  verbosity=0)
    served = ag_model.fast_path["model"]
    assert clone.model_best == served
    assert ag_model.fast_path["autogluon_best"] in [c["model"] for c in
                                                    ag_model.fast_path["candidates"]]


# ---- the fast path -------------------------------------------------------------------------------


def test_fast_path_is_a_native_booster_within_budget(ag_model):
    fast = ag_model.fast_path
    assert fast["kind"] == "native" and fast["library"] in ("lightgbm", "catboost")
    assert fast["parity"]["max_abs_diff"] <= artifact.PARITY_TOLERANCE
    chosen = [c for c in fast["candidates"] if c.get("chosen")]
    assert [c["model"] for c in chosen] == [fast["model"]]
    assert chosen[0]["single_row_p50_ms"] <= fast["latency_budget_ms"]
    assert (ag_model.directory / artifact.FAST_ENCODER).is_file()
    assert "native booster" in repr(ag_model)


def test_fast_path_equals_the_full_predictor_on_every_row(ag_model, german):
    fast = ag_model.predict_proba(german)
    full = ag_model.predict_proba_full(german)

    assert fast.shape == (len(german), 2)
    assert np.max(np.abs(fast - full)) <= 1e-6
    assert np.allclose(fast.sum(axis=1), 1.0)


def test_fast_path_equals_the_full_predictor_on_single_rows(ag_model, german):
    for i in range(0, len(german), 10):
        row = german.iloc[[i]]
        assert np.max(np.abs(ag_model.predict_proba(row) - ag_model.predict_proba_full(row))) \
            <= 1e-6, f"row {i}"
    one = german.drop(columns=[TARGET]).iloc[3].to_dict()  # a request body: one mapping
    assert np.max(np.abs(ag_model.predict_proba(one) - ag_model.predict_proba_full(one))) <= 1e-6


def test_full_path_load_scores_like_the_fast_path(ag_model, german):
    full = artifact.load(ag_model.directory, fast=False)
    assert np.max(np.abs(full.predict_proba(german) - ag_model.predict_proba(german))) <= 1e-6


def test_tree_view_contributions_add_up_to_the_margin(ag_model, german):
    view = ag_model.tree_view()
    assert view is not None and view.output == "log_odds"
    rows = ag_model.validate(german.iloc[:40])
    contributions = view.contributions(view.encode(rows))
    p = ag_model.score(german.iloc[:40])
    assert contributions.shape[0] == 40
    assert np.max(np.abs(contributions.sum(axis=1) - np.log(p / (1 - p)))) < 1e-5
    assert set(view.groups) == set(ag_model.input_columns)


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sklearn", "autogluon"])
def test_validate_names_every_bad_field_in_one_error(flavour, sklearn_dir, ag_model, german):
    model = ag_model if flavour == "autogluon" else artifact.load(sklearn_dir)
    bad = german.head(3).drop(columns=["duration"]).astype({"credit_amount": object})
    bad.loc[1, "credit_amount"] = "lots"
    bad.loc[2, "purpose"] = "spaceship"

    with pytest.raises(InvalidInput) as refused:
        model.predict_proba(bad)
    message = str(refused.value)
    for field in ("duration", "credit_amount", "purpose"):
        assert field in message
    assert "spaceship" in message


def test_validate_ignores_extra_columns_and_orders_by_schema(ag_model, german):
    extra = german.assign(applicant_id=range(len(german)))[::-1]
    rows = ag_model.validate(extra)
    assert list(rows.columns) == ag_model.input_columns
    assert not set(rows.columns) & {"sex", "age", "applicant_id", TARGET}


# ---- integrity -----------------------------------------------------------------------------------

UNPICKLED: list[str] = []


def _detonate() -> None:
    UNPICKLED.append("payload")
    raise RuntimeError("the tampered payload was unpickled")


class _Bomb:
    def __reduce__(self):
        return (_detonate, ())


def test_tampered_payload_is_refused_before_unpickling(sklearn_dir, store, tmp_path):
    stored = store.put_directory(sklearn_dir, "models/credit-sk/tampered")
    payload = Path(stored.uri) / artifact.SKLEARN_PAYLOAD
    joblib.dump(_Bomb(), payload)

    with pytest.raises(IntegrityError, match="model.joblib"):
        artifact.load_verified(store, stored.uri, stored.sha256)
    assert UNPICKLED == []
    with pytest.raises(RuntimeError):  # the bomb is live: loading it unchecked would go off
        joblib.load(payload)
    UNPICKLED.clear()


@pytest.mark.parametrize("which", ["predictor", "fast"])
def test_changed_byte_in_autogluon_artifact_is_refused(which, ag_dir, store):
    stored = store.put_directory(ag_dir, f"models/credit-ag/tampered-{which}")
    root = Path(stored.uri)
    rel = next(r for r in sorted(stored.manifest["files"]) if r.startswith(which))
    data = bytearray((root / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / rel).write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match=rel):
        artifact.load_verified(store, stored.uri, stored.sha256)


def test_load_rechecks_a_fetched_copy(sklearn_dir, store):
    stored = store.put_directory(sklearn_dir, "models/credit-sk/recheck")
    local = store.fetch(stored.uri, stored.sha256)
    joblib.dump(_Bomb(), local / artifact.SKLEARN_PAYLOAD)

    with pytest.raises(IntegrityError, match="changed"):
        artifact.load(local)
    assert UNPICKLED == []


# ---- metadata ------------------------------------------------------------------------------------


def test_metadata_records_schema_versions_lineage_and_fast_path(sklearn_dir, ag_dir, schema):
    sk, ag = artifact.read_metadata(sklearn_dir), artifact.read_metadata(ag_dir)

    for meta in (sk, ag):
        assert meta["input_schema"] == schema
        assert meta["classes"] == [0, 1] and meta["target"] == TARGET
        assert meta["lineage"] == {"datasets": ["german-credit:1"]}
        assert meta["reason_codes"] == REASONS
        assert {"python", "pandas", "numpy", "scikit-learn"} <= set(meta["libraries"])
        assert "files" not in meta and "format" not in meta  # the store adds those
    assert sk["flavour"] == "sklearn" and sk["metrics"] == {"roc_auc": 0.8}
    assert ag["flavour"] == "autogluon"
    assert {"autogluon.tabular", "lightgbm", "catboost"} <= set(ag["libraries"])
    assert ag["fast_path"]["model"] and ag["fast_path"]["exact_because"]
    json.dumps(ag, allow_nan=False)  # strict JSON


def test_unknown_or_missing_flavour_is_refused(tmp_path):
    (tmp_path / "MODEL.json").write_text(json.dumps({"flavour": "pytorch"}))
    with pytest.raises(InvalidInput, match="pytorch"):
        artifact.load(tmp_path)
    with pytest.raises(InvalidInput, match="None"):
        artifact.load(tmp_path / "nowhere")


def test_save_refuses_a_mismatched_target_or_schema(predictor, schema, tmp_path):
    with pytest.raises(InvalidInput, match="target"):
        artifact.save_autogluon(predictor, tmp_path / "a", problem_type="binary",
                                target="income", input_schema=schema)
    partial = {"columns": dict(list(schema["columns"].items())[:2])}
    with pytest.raises(InvalidInput, match="lacks columns"):
        artifact.save_autogluon(predictor, tmp_path / "b", problem_type="binary",
                                target=TARGET, input_schema=partial)
