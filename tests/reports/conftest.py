"""One real store per backend for the whole module, and the reports made on it.

Each papermill run starts a kernel (seconds), so the reports are made once per module: a
compliance report, an audit report over a period with recorded decisions, and the same audit
report after a prediction record was altered in the database. What the Workspace itself says
is captured next to each report, at the moment the report was made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from nexml_ext.config import Settings
from nexml_ext.workspace import Workspace
from tests.conftest import Stack
from tests.workspace.conftest import module_world

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = "<script>alert(1)</script>"
FINDINGS = "Validated on the holdout <b>and</b> documentation complete; cut-off kept at 0.5 & reviewed."
TAMPERED_SEQ = 7


@dataclass
class Reported:
    settings: Settings
    stack: Stack
    backend: str
    ref: str
    since: str
    until: str
    compliance: Any  # views.Report
    compliance_html: bytes
    score: int
    tier: int
    artifact_sha256: str
    audit: Any
    audit_html: bytes
    decisions: dict[tuple[str, str], dict[str, int]]
    tampered: Any
    tampered_html: bytes
    heads_before: dict[str, Any] = field(default_factory=dict)

    def token(self, name: str) -> str:
        return self.stack.tokens[name]


def nexml(settings: Settings, token: str, *args: str, cwd: Path | None = None):
    """Run the real CLI as a separate process acting with ``token``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env["NEXML_HOME"] = str(settings.home)
    env["NEXML_DATABASE_URL"] = settings.database_url
    env["NEXML_ARTIFACT_ROOT"] = settings.artifact_root
    env["NEXML_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", *args],
        env=env, capture_output=True, text=True, timeout=600, cwd=cwd,
    )


def workspace_decisions(ws: Workspace, since: str, until: str) -> dict[tuple[str, str], dict]:
    """Decisions per (deployment, model version) as find_decisions returns them, one by one."""
    counts: dict[tuple[str, str], Counter] = {}
    for d in ws.find_decisions(since=since, until=until, limit=100_000):
        c = counts.setdefault((d.deployment, d.model_ref), Counter())
        if d.shadow:
            c["shadow"] += 1
            continue
        c["decisions"] += 1
        c["approved" if d.output.get("approved") else "declined"] += 1
    return {k: {n: v[n] for n in ("decisions", "approved", "declined", "shadow")}
            for k, v in counts.items()}


def documented_world(stack, model_dir: Path, german, tmp_path_factory, label: str):
    """A World on ``stack`` with the German credit split registered (75/25, seed 7) and
    credit-risk:1 staged and documented by dana: ``(world, version)``."""

    world = module_world(stack, model_dir, german, tmp_path_factory, label)
    version = world.staged(stack.dana, "credit-risk")
    world.document(stack.dana, version.ref)
    return world, version


@pytest.fixture(scope="module")
def reported(module_stack, model_dir, german, tmp_path_factory) -> Reported:
    backend, s = module_stack
    world, version = documented_world(s, model_dir, german, tmp_path_factory, "report")
    s.dana.compliance(version.ref).set("domain", {"out_of_scope_uses": SCRIPT})
    s.mia.validate(version.ref, dataset=world.holdout)
    s.mark.approve(version.ref, findings=FINDINGS)
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"rules": [], "default": "main"})
    rows = german.drop(columns=["risk"]).head(40)
    s.admin._as_platform().predict(
        "loans", rows, subject_ids=[f"applicant-{i}" for i in range(len(rows))], key=key
    )
    today = datetime.now(UTC).date()
    since, until = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()

    heads_before = s.cora.audit.heads()
    compliance = s.cora.make_report("compliance", subject=version.ref)
    state = s.cora.compliance(version.ref).state()
    audit = s.cora.make_report("audit", since=since, until=until)
    decisions = workspace_decisions(s.cora, since, until)

    engine = create_engine(s.settings.database_url)
    try:
        with engine.begin() as conn:
            changed = conn.execute(
                text("UPDATE prediction_records SET subject_id = 'forged' WHERE seq = :seq AND "
                     "deployment_id = (SELECT id FROM deployments WHERE name = 'main')"),
                {"seq": TAMPERED_SEQ},
            ).rowcount
        assert changed == 1
    finally:
        engine.dispose()
    tampered = s.cora.make_report("audit", since=since, until=until)

    result = Reported(
        s.settings, s, backend, version.ref, since, until,
        compliance, s.cora.report_html(compliance.id), state.score.total, state.tier,
        version.artifact_sha256,
        audit, s.cora.report_html(audit.id), decisions,
        tampered, s.cora.report_html(tampered.id), heads_before,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    for name, data in (("compliance", result.compliance_html), ("audit", result.audit_html),
                       ("audit-tampered", result.tampered_html)):
        (ARTIFACTS / f"{name}-{backend}.html").write_bytes(data)
    return result
