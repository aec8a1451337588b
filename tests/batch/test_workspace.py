"""The Workspace and CLI use cases: authorised, audited with the input's fingerprint, and the
same drift as the in-memory ``Workspace.drift`` on the same rows."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexml_ext.errors import InvalidInput, PermissionDenied

from .test_drift_chunked import assert_same_report


def fingerprint(directory) -> str:
    """The input fingerprint, computed here from the directory listing and Parquet footers."""
    files = [
        {
            "name": name,
            "bytes": os.path.getsize(directory / name),
            "rows": pq.ParquetFile(directory / name).metadata.num_rows,
        }
        for name in sorted(os.listdir(directory))
    ]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def test_batch_runs_are_authorised_audited_and_equal_in_memory(
    stack, version, credit_dir, credit_current, tmp_path
):
    ref = version.ref
    run = stack.dana.batch_drift(ref, credit_dir, memory_limit="1MB")
    in_memory = stack.dana.drift(ref, credit_current)
    assert_same_report(in_memory.to_dict(), run.report.to_dict())
    assert "duration" in run.report.alerts

    scored = stack.mark.batch_score(ref, credit_dir, tmp_path / "out", keep=["age"])
    out = pd.read_parquet(tmp_path / "out")
    assert scored.rows == len(out) == len(credit_current)
    expected = stack.dana._load_model(ref).score(credit_current)
    np.testing.assert_allclose(out["score"], expected, rtol=0, atol=1e-12)
    assert np.array_equal(out["age"], credit_current["age"])

    # a data scientist analyses their own versions only; nothing is read or written
    with pytest.raises(PermissionDenied, match="may not analyse"):
        stack.dave.batch_score(ref, credit_dir, tmp_path / "refused")
    with pytest.raises(PermissionDenied, match="only its author"):
        stack.dave.batch_drift(ref, credit_dir)
    assert not (tmp_path / "refused").exists()
    with pytest.raises(InvalidInput, match="not an empty directory"):
        stack.mark.batch_score(ref, credit_dir, tmp_path / "out")

    events = {e.action: e for e in stack.cora.audit.log(object=ref)}
    score_event, drift_event = events["model.batch_score"], events["model.batch_drift"]
    assert score_event.actor == "mark" and drift_event.actor == "dana"
    for event in (score_event, drift_event):
        assert event.data["input"] == {
            "sha256": fingerprint(credit_dir),
            "files": 5,
            "bytes": sum(os.path.getsize(p) for p in credit_dir.iterdir()),
            "rows": 6000,
        }
        assert event.data["rows"] == 6000 and event.data["executor"] == "in-process"
        assert event.data["artifact_sha256"] == version.artifact_sha256
    assert drift_event.data["alerts"] == run.report.alerts
    assert score_event.data["outputs"] == [f"part-{i:05d}.parquet" for i in range(5)]
    assert stack.cora.audit.verify().ok


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cli_batch_score_and_drift(stack, version, credit_dir, tmp_path):
    """``nexml batch score`` as a real process (its progress bar on stderr); the drift
    commands through click's runner in this process (the same command code, no start-up)."""
    from click.testing import CliRunner

    from nexml_ext.cli import cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(stack.settings.home), NEXML_TOKEN=stack.tokens["dana"])
    out = tmp_path / "scored"
    scoring = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nexml_ext.cli",
            "batch",
            "score",
            version.ref,
            "--input",
            str(credit_dir),
            "--output",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runner = CliRunner()
    here = {"NEXML_HOME": env["NEXML_HOME"], "NEXML_TOKEN": env["NEXML_TOKEN"]}

    def batch(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, ["batch", *args], env=here, catch_exceptions=False)

    as_json = batch("drift", version.ref, "--input", str(credit_dir), "--json")
    table = batch("drift", version.ref, "--input", str(credit_dir), "--memory-limit", "2MB")
    missing = batch("drift", version.ref, "--input", str(tmp_path / "missing"))
    assert as_json.exit_code == 0 and table.exit_code == 0, (as_json.output, table.output)
    report = json.loads(as_json.stdout)
    assert report["run"]["input"]["sha256"] == fingerprint(credit_dir)
    assert report["rows"] == 6000
    lines = table.stdout.splitlines()
    header = ["COLUMN", "KIND", "PSI", "STATUS", "TEST", "STATISTIC", "P_VALUE", "DRIFT"]
    assert lines[0].split() == header
    duration = next(line.split() for line in lines if line.startswith("duration"))
    assert duration[3] == "alert" == report["columns"]["duration"]["status"]
    assert float(duration[2]) == pytest.approx(report["columns"]["duration"]["psi"], abs=1e-4)
    assert missing.exit_code != 0
    assert (
        missing.stderr.strip()
        == f"error: batch input {str(tmp_path / 'missing')!r} is not a directory"
    )

    said, bar = scoring.communicate(timeout=300)
    assert scoring.returncode == 0, bar
    assert "scored 6000 rows of 5 file(s)" in said
    assert "6.00k/6.00k" in bar  # the tqdm progress bar, in rows, on stderr
    assert pq.ParquetFile(out / "part-00000.parquet").metadata.num_rows == 1200
