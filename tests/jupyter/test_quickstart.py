"""The quickstart notebook runs headless, top to bottom, in a fresh kernel against the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "examples" / "quickstart.ipynb"
KERNEL = "python3"


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``python3`` kernelspec, installed from ipykernel into a private prefix if missing."""
    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        prefix = tmp_path / "kernel-prefix"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ipykernel",
                "install",
                "--prefix",
                str(prefix),
                "--name",
                KERNEL,
            ],
            check=True,
            capture_output=True,
        )
        monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return KERNEL


def text_of(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    data = output.get("data", {})
    return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))


@pytest.mark.slow
def test_quickstart_runs_in_a_fresh_kernel(python3_kernel, tmp_path, monkeypatch):
    for name in ("NEXML_HOME", "NEXML_TOKEN", "NEXML_DATABASE_URL", "NEXML_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)  # the notebook makes its own throwaway store
    workdir = tmp_path / "work"
    workdir.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)

    client = NotebookClient(
        nb, timeout=300, kernel_name=python3_kernel, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [
        f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
        for i, c in enumerate(code)
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors, errors
    # %nexml reports a refusal as one "error: ..." line on stderr instead of raising
    refusals = [
        line
        for c in code
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
        for line in o.text.splitlines()
        if line.startswith(("error:", "internal error:")) or "Traceback" in line
    ]
    assert not refusals, refusals

    def outputs(marker: str) -> str:
        """All output text of the one code cell whose source contains ``marker``."""
        cells = [c for c in code if marker in c.source]
        assert len(cells) == 1, marker
        assert cells[0].outputs, f"the cell with {marker!r} shows nothing"
        return "\n".join(text_of(o) for o in cells[0].outputs)

    assert "german-credit:1" in outputs("%nexml ingest")
    assert "german-credit-holdout:1" in outputs("%nexml split")
    # The families the 20 s budget reached depend on the machine's speed (the search skips
    # the rest once a champion exists): the cell must show the run and its leaderboard.
    trained = outputs("run = %nexml train")
    assert "TrainingRun(backend='sklearn'" in trained and "<table" in trained
    assert outputs("%nexml leaderboard")
    registered = outputs("%nexml register")
    assert "credit-risk:1" in registered and "staging" in registered
    rich = [
        o.data["text/html"]
        for c in code
        if "%nexml register" in c.source
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert rich and "kept out (protected)" in rich[0]  # the ModelVersion's own HTML card
    reasons = outputs("explanation = ws.explain")
    assert "below the cutoff" in reasons
    assert any(line.startswith("  - ") for line in reasons.splitlines()), reasons
    assert outputs("%nexml explain")
    assert outputs("%nexml fairness")
    assert "compliance score" in outputs("demo_compliance()")
    assert outputs("%nexml compliance")
    validation = outputs("%nexml validate")
    assert "roc_auc" in validation and "credit-risk:1" in validation
    assert outputs("%nexml show")
