"""Dask and in-process give the same numbers: drift and predictions over the same Parquet files,
on a LocalCluster of two worker processes started once for this module."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexml_ext.ml import batch
from nexml_ext.ml.drift import drift_report

from .test_drift_chunked import assert_same_report


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit="1GiB",
    ) as cluster:
        yield cluster.scheduler_address


def test_dask_and_in_process_give_equal_drift(
    scheduler, credit_dir, credit_current, credit_profile
):
    columns = [c for c in credit_current.columns if c != "risk"]
    expected = drift_report(credit_profile, credit_current[columns]).to_dict()
    here = batch.drift_files(
        credit_profile, credit_dir, columns=columns, memory_limit="1MB", collect_limit=1
    )
    seen: list[int] = []
    there = batch.drift_files(
        credit_profile,
        credit_dir,
        columns=columns,
        memory_limit="1MB",
        collect_limit=1,
        dask=scheduler,
        progress=seen.append,
    )
    assert there.executor == scheduler and here.executor == "in-process"
    assert seen == [1200] * 5  # one progress report per file
    assert there.passes == here.passes >= 2
    assert_same_report(expected, here.report.to_dict())
    assert_same_report(here.report.to_dict(), there.report.to_dict())
    for name, column in here.report.columns.items():  # counts: identical, not just close
        assert there.report.columns[name].actual == column.actual


def test_dask_and_in_process_give_equal_predictions(
    scheduler, credit_dir, credit_current, tmp_path, stored_model
):
    model, sha = stored_model
    here = batch.score_files(model, credit_dir, tmp_path / "here", memory_limit="1MB")
    payload = batch.ArtifactPayload.of(model.directory, sha)
    there = batch.score_files(
        model,
        credit_dir,
        tmp_path / "there",
        memory_limit="1MB",
        dask=scheduler,
        payload=payload,
        keep=["age"],
    )
    assert here.rows == there.rows == len(credit_current)
    assert here.outputs == there.outputs == [f"part-{i:05d}.parquet" for i in range(5)]
    a = pd.read_parquet(tmp_path / "here")
    b = pd.read_parquet(tmp_path / "there")
    assert list(b.columns) == ["age", "score", "prediction", "approved"]
    pd.testing.assert_frame_equal(a, b.drop(columns=["age"]))
    assert np.array_equal(b["age"], credit_current["age"])  # input order kept
    # the oracle: the model on the whole table at once
    scores = model.score(credit_current)
    np.testing.assert_allclose(a["score"], scores, rtol=0, atol=1e-12)
    assert np.array_equal(a["prediction"], np.where(scores >= 0.5, 1, 0))


def test_a_worker_loads_only_the_registered_artifact(stored_model, credit_current):
    """What a worker receives is checked before anything is unpickled: the manifest against
    the registry's hash, every file against the manifest."""
    from nexml_ext.errors import IntegrityError

    model, sha = stored_model
    good = batch.ArtifactPayload.of(model.directory, sha)
    batch._WORKER_MODELS.clear()
    rows = credit_current.head(50)
    assert np.array_equal(batch._model_of(good).score(rows), model.score(rows))

    batch._WORKER_MODELS.clear()
    with pytest.raises(IntegrityError, match="manifest is not the registered one"):
        batch._model_of(batch.ArtifactPayload("0" * 64, good.files))
    pickled = next(name for name in good.files if name.endswith(".joblib"))
    changed = {**good.files, pickled: good.files[pickled] + b"\0"}
    with pytest.raises(IntegrityError, match=f"{pickled} changed"):
        batch._model_of(batch.ArtifactPayload(sha, changed))
    with pytest.raises(IntegrityError, match="not in the manifest"):
        batch._model_of(batch.ArtifactPayload(sha, {**good.files, "extra.pkl": b"x"}))
    assert batch._WORKER_MODELS == {}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_workspace_runs_on_dask(scheduler, stack, version, credit_dir, credit_current, tmp_path):
    """The Workspace ships the verified artifact to the workers; the audit event says where
    the run ran."""
    drift = stack.mark.batch_drift(version.ref, credit_dir, dask=scheduler)
    assert_same_report(
        stack.mark.drift(version.ref, credit_current).to_dict(), drift.report.to_dict()
    )
    run = stack.mark.batch_score(version.ref, credit_dir, tmp_path / "out", dask=scheduler)
    scores = stack.mark._load_model(version.ref).score(credit_current)
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "out")["score"], scores, atol=1e-12)
    events = stack.cora.audit.log(object=version.ref, action="model.batch_score")
    assert [e.data["executor"] for e in events] == [scheduler] and run.rows == 6000
