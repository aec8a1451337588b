"""Registering datasets and models: hashing, lineage, immutability, any fsspec artifact root."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from nexml_ext.errors import InvalidInput, NotFound, PermissionDenied
from nexml_ext.workspace import Workspace


def test_dataset_versions_are_content_addressed(stack, german):
    first = stack.dana.register_dataset(german, "german")
    again = stack.dave.register_dataset(german.copy(), "german")
    assert again == first  # unchanged data finds the existing version, whoever registers it
    changed = german.copy()
    changed.loc[0, "credit_amount"] += 1
    second = stack.dana.register_dataset(changed, "german")
    assert (first.version, second.version) == (1, 2)
    assert first.content_sha256 != second.content_sha256
    assert first.row_count == 1000
    assert first.schema["columns"]["sex"]["categories"] == ["female", "male"]
    assert first.schema["columns"]["age"]["min"] == 19.0
    reordered = stack.dana.register_dataset(german.iloc[::-1].reset_index(drop=True), "german")
    assert reordered.version == 3  # row order is part of the content
    assert stack.dana.load_dataset(first.ref).equals(german)
    events = stack.cora.audit.log(action="dataset.register")
    assert [e.object_ref for e in events] == [
        "dataset:german:1",
        "dataset:german:2",
        "dataset:german:3",
    ]


def test_dataset_bad_input_changes_nothing(stack, german, tmp_path):
    before = len(stack.cora.audit.log())
    with pytest.raises(InvalidInput, match="has no rows"):
        stack.dana.register_dataset(german.head(0), "empty")
    with pytest.raises(InvalidInput, match="invalid dataset name"):
        stack.dana.register_dataset(german, "no spaces please")
    with pytest.raises(InvalidInput, match="no such file"):
        stack.dana.register_dataset(tmp_path / "missing.csv", "missing")
    with pytest.raises(PermissionDenied, match="compliance_officer cora may not register"):
        stack.cora.register_dataset(german, "cora-data")
    with pytest.raises(NotFound, match="dataset version german:9 not found"):
        stack.dana.register_dataset(german, "child", parent="german:9")
    assert stack.dana.datasets() == []
    assert len(stack.cora.audit.log()) == before


def test_dataset_from_csv_file_records_its_source(stack, german, tmp_path):
    path = tmp_path / "credit.csv"
    german.to_csv(path, index=False)
    version = stack.dana.register_dataset(path, "from-file")
    assert version.source["kind"] == "file" and version.source["uri"] == str(path)
    assert version.source["format"] == "csv" and version.source["read_at"]
    assert version.row_count == len(german)


def test_model_registration_and_lineage(world):
    s = world.stack
    v1 = world.staged(s.dana, "credit-risk")
    v2 = world.staged(s.dave, "credit-risk")
    assert (v1.ref, v2.ref, v1.status, v2.author) == (
        "credit-risk:1",
        "credit-risk:2",
        "staging",
        "dave",
    )
    assert v1.flavour == "sklearn" and v1.problem_type == "binary" and v1.target == "risk"
    assert v1.lineage["datasets"][0]["ref"] == world.train
    assert v2.template == "credit_scoring"
    summary = {m.name: m for m in s.cora.models()}["credit-risk"]
    assert (summary.versions, summary.latest, summary.latest_status) == (2, 2, "staging")
    with pytest.raises(NotFound, match="unknown|not found"):
        s.dana.register_model(world.fresh_artifact(), "x", template="no_such_template")
    with pytest.raises(NotFound, match="lineage dataset version nope:1 not found"):
        s.dana.register_model(world.fresh_artifact(), "x", datasets=["nope:1"])
    with pytest.raises(InvalidInput, match="is not a directory"):
        s.dana.register_model(world.fresh_artifact() / "model.joblib", "x")
    assert [m.name for m in s.cora.models()] == ["credit-risk"]


def test_artifacts_in_any_fsspec_root(stack, world):
    """The whole lifecycle with artifacts in fsspec's memory filesystem instead of a folder."""
    root = f"memory://nexml-{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(stack.settings, artifact_root=root)
    dana = Workspace.open(settings, stack.tokens["dana"])
    mia = Workspace.open(settings, stack.tokens["mia"])
    mark = Workspace.open(settings, stack.tokens["mark"])
    try:
        holdout = dana.register_dataset(stack.dana.load_dataset(world.holdout), "memory-holdout")
        assert holdout.data_uri.startswith("memory://")
        version = dana.register_model(
            world.fresh_artifact(), "in-memory", template="credit_scoring", datasets=[world.train]
        )
        assert version.artifact_uri.startswith(root)
        world.document(dana, version.ref)
        assert mia.validate(version.ref, dataset=holdout.ref).metrics["roc_auc"] > 0.6
        mark.approve(version.ref, findings="Validated from the memory store; all complete.")
        assert mark.deploy(version.ref, name="mem").model_ref == version.ref
    finally:
        for ws in (dana, mia, mark):
            ws.close()
