"""The ML engine end to end through the Workspace, on the German credit data.

Ingest from the real PostgreSQL and MariaDB servers, split, AutoML on both backends within a
60 s budget to ROC-AUC >= 0.72 on a seeded holdout, register, round-trip, validate with the full
evidence, explain with reason codes, test fairness and drift, and refuse a tampered artifact.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine, text

from nexml_ext.errors import IntegrityError, InvalidInput
from nexml_ext.ml.explain import load_reason_table
from nexml_ext.workspace import models as ws_models

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture
def credit(stack, german):
    """German credit ingested, split 75/25 (stratified, seed 7)."""
    full = stack.dana.register_dataset(german, "german-credit")
    train, holdout = stack.dana.split(full.ref, "risk", test_size=0.25, seed=7)
    return full, train, holdout


@pytest.mark.parametrize("server", [PG, MARIADB], ids=["postgresql", "mariadb"])
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_ingest_from_database_servers(stack, german, server):
    table = f"credit_{uuid.uuid4().hex[:8]}"
    engine = create_engine(server)
    german.to_sql(table, engine, index=False)
    try:
        first = stack.dana.ingest(server, "from-db", table=table)
        again = stack.dana.ingest(server, "from-db", query=f"SELECT * FROM {table}")
        assert first.row_count == 1000
        assert again == first  # same content, found again
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET credit_amount = credit_amount + 1 "
                              "WHERE credit_amount = 1169"))
        changed = stack.dana.ingest(server, "from-db", table=table)
        assert changed.version == 2 and changed.content_sha256 != first.content_sha256
        assert first.profile["columns"]["credit_amount"]["kind"] == "numeric"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("automl", ["sklearn", "autogluon"])
def test_train_register_validate_explain(stack, credit, automl, tmp_path):
    full, train, holdout = credit
    run = stack.dana.train(train.ref, "risk", backend=automl, time_limit=45,
                           template="credit_scoring", seed=7, progress=False)
    assert set(run.protected) == {"sex", "age"}
    assert not {"sex", "age"} & set(run.features)
    holdout_df = stack.dana.load_dataset(holdout.ref)
    version = stack.dana.register_model(run, "credit-" + automl, template="credit_scoring",
                                        reason_codes=load_reason_table("german_credit"))
    assert version.lineage["datasets"][0]["ref"] == train.ref
    model = stack.dana._load_model(version.ref)
    auc = roc_auc_score(holdout_df["risk"], model.score(holdout_df))
    assert auc >= 0.72, auc

    # Round trip: a fresh load from the store gives identical predictions.
    ws_models._LOADED.clear()
    again = stack.mark._load_model(version.ref)
    assert np.array_equal(again.predict_proba(holdout_df), model.predict_proba(holdout_df))

    validation = stack.mark.validate(version.ref, dataset=holdout.ref)
    assert validation.metrics["roc_auc"] == pytest.approx(auc, abs=1e-9)
    details = stack.cora.validations(version.ref)[-1]
    assert details.status in {"passed", "failed"}

    explanation = stack.dana.explain(version.ref, holdout_df.head(60))
    denied = np.flatnonzero(~explanation.approved)
    assert denied.size > 0
    for row in denied:
        reasons = explanation.reasons[row]
        assert 0 < len(reasons) <= 4
        assert all(r.feature not in {"sex", "age"} for r in reasons)
        assert all(r.contribution < 0 for r in reasons)
    for row in np.flatnonzero(explanation.approved):
        assert explanation.reasons[row] == []

    fairness = stack.cora.fairness(version.ref, holdout.ref)
    assert set(fairness.attributes) == {"sex", "age"}
    drift = stack.cora.drift(version.ref, holdout.ref)
    assert drift.to_dict()
    kinds = [e.action for e in stack.cora.audit.log(object=version.ref)]
    for action in ("model.register", "validation.record", "model.explain", "model.fairness",
                   "model.drift"):
        assert action in kinds


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_protected_input_needs_a_justification_kept_in_the_record(stack, credit):
    _, train, _ = credit
    with pytest.raises(InvalidInput, match="justification"):
        stack.dana.train(train.ref, "risk", allow_protected_inputs=["age"], time_limit=10,
                         progress=False)
    run = stack.dana.train(train.ref, "risk", allow_protected_inputs=["age"], time_limit=10,
                           justification="Age used as permitted by Reg B 1002.6(b)(2) "
                           "in an empirically derived system.", progress=False)
    assert "age" in run.features and "sex" not in run.features
    version = stack.dana.register_model(run, "with-age", template="credit_scoring")
    used = stack.cora.compliance(version.ref).fields("fairness")["protected_inputs"]
    assert [u["attribute"] for u in used] == ["age"]
    assert "1002.6(b)(2)" in used[0]["justification"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tampered_artifact_refused_at_load(stack, credit):
    _, train, holdout = credit
    run = stack.dana.train(train.ref, "risk", time_limit=10, progress=False)
    version = stack.dana.register_model(run, "tamper-me")
    payload = next(p for p in Path(version.artifact_uri).rglob("*") if p.is_file()
                   and p.name != "MODEL.json")
    payload.write_bytes(payload.read_bytes() + b"\x00")
    ws_models._LOADED.clear()
    with pytest.raises(IntegrityError, match="changed"):
        stack.mark.validate(version.ref, dataset=holdout.ref)
    assert stack.mark.validations(version.ref) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_training_input_is_named(stack, german):
    one_class = stack.dana.register_dataset(german[german["risk"] == 1], "one-class")
    with pytest.raises(InvalidInput, match="one class|single class|only one"):
        stack.dana.train(one_class.ref, "risk", time_limit=5, progress=False)
    full = stack.dana.register_dataset(german, "g")
    with pytest.raises(InvalidInput, match="nope"):
        stack.dana.train(full.ref, "nope", time_limit=5, progress=False)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_scoring_input_names_every_field(world, german):
    s = world.stack
    version = world.staged(s.dana)
    rows = german.head(5).drop(columns=["duration"])
    rows["credit_amount"] = "a lot"
    rows.loc[rows.index[0], "housing"] = "castle"
    before = len(s.dana.jobs())
    with pytest.raises(InvalidInput) as err:
        s.dana.explain(version.ref, rows)
    message = str(err.value)
    for fragment in ("duration", "credit_amount", "housing", "castle"):
        assert fragment in message, message
    assert len(s.dana.jobs()) == before  # nothing recorded for a refused call
    with pytest.raises(InvalidInput, match="no rows"):
        s.dana.drift(version.ref, german.head(0))
