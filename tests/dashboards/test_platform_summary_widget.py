"""The platform summary against a real store: its numbers agree with the Workspace (and with
numpy on the recorded latencies), sections a role may not read are absent, and the chain check
names a record altered in the database."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from nexml_ext.errors import PermissionDenied
from nexml_ext.jupyter.widgets.platform_summary import PlatformSummaryDashboard, alerts_table
from tests.workspace.conftest import World, module_world

PNG = b"\x89PNG\r\n\x1a\n"
SUBJECTS = 30
WITH_OUTCOME = 12


def rendered(widget: widgets.Widget) -> str:
    """Every piece of HTML a widget tree renders (each widget's state must serialise)."""
    widget.get_state()
    out = [widget.value] if isinstance(widget, widgets.HTML) else []
    for child in getattr(widget, "children", ()):
        out.append(rendered(child))
    return "\n".join(out)


def classes(widget: widgets.Widget) -> set[str]:
    """Every CSS class in a widget tree."""
    found = set(getattr(widget, "_dom_classes", ()))
    for child in getattr(widget, "children", ()):
        found |= classes(child)
    return found


def pngs(widget: widgets.Widget) -> list[bytes]:
    out = [bytes(widget.value)] if isinstance(widget, widgets.Image) else []
    for child in getattr(widget, "children", ()):
        out += pngs(child)
    return out


@dataclass
class Dash:
    """A store with one model deployed and serving, one rejected and one waiting."""

    backend: str
    stack: Any
    world: World
    deployed: str
    staged: str
    rejected: str
    key: str


@pytest.fixture(scope="module")
def dash(module_stack, model_dir, german, tmp_path_factory) -> Dash:
    backend, s = module_stack
    world = module_world(s, model_dir, german, tmp_path_factory, "dash")
    deployed = world.approved(s.dana, "credit-risk")
    s.mark.deploy(deployed.ref, name="main")
    _, key = s.mark.set_route("loans", {"rules": [], "default": "main"})
    rows = german.drop(columns=["risk"]).head(SUBJECTS)
    s.admin._as_platform().predict(
        "loans", rows, subject_ids=[f"applicant-{i}" for i in range(SUBJECTS)], key=key
    )
    s.mark.record_outcomes([
        {"subject_id": f"applicant-{i}", "outcome": int(german["risk"][i])}
        for i in range(WITH_OUTCOME)
    ])
    rejected = world.staged(s.dave, "fraud-score")  # rejecting needs no validation
    s.mia.reject(rejected.ref, findings="Holdout too small for the fraud segment.")
    staged = world.staged(s.dave, "churn")
    return Dash(backend, s, world, deployed.ref, staged.ref, rejected.ref, key)


def test_inventory_and_health_agree_with_the_workspace(dash):
    s = dash.stack
    board = PlatformSummaryDashboard(s.admin)
    # Inventory: counted one version at a time through the Workspace.
    statuses = Counter(v.status for m in s.admin.models() for v in s.admin.versions(m.name))
    assert board.counts == {**{k: 0 for k in board.counts}, **statuses}
    assert board.counts["deployed"] == 1 and board.counts["staging"] == 1
    assert board.counts["rejected"] == 1
    html = rendered(board)
    assert "nexml-summary-inventory" in classes(board)
    # Health: the decisions one by one (an audited read), latencies checked with numpy.
    found = [d for d in s.admin.find_decisions(deployment="main", limit=10_000) if not d.shadow]
    (main,) = [h for h in board.health if h.deployment == "main"]
    assert main.decisions == len(found) == SUBJECTS
    assert main.with_outcome == sum(d.outcome is not None for d in found) == WITH_OUTCOME
    latencies = np.array([d.latency_ms for d in found], dtype=float)
    assert main.latency_p95_ms == pytest.approx(np.percentile(latencies, 95))
    assert main.latency_p50_ms == pytest.approx(np.median(latencies))
    assert main.latency_max_ms == pytest.approx(latencies.max())
    assert main.model_ref == dash.deployed
    assert "error counts are not stored" in html
    # Pending approvals and compliance scores as the Workspace computes them.
    assert board.pending == [dash.staged]
    for ref, score in board.scores.items():
        assert score == s.admin.compliance(ref).score().total
    assert set(board.scores) == {dash.deployed, dash.staged}
    # Pictures: the inventory, the scores and the activity are PNG charts.
    assert len(pngs(board)) >= 3 and all(p.startswith(PNG) for p in pngs(board))


def test_activity_and_events_agree_with_the_audit_log(dash):
    s = dash.stack
    board = PlatformSummaryDashboard(s.admin, verify_on_open=False)
    log = s.admin.audit.log()
    per_actor = Counter(e.actor for e in log)
    shown = {a.actor: a.events for a in board.activity_rows}
    # The board read the activity before this log was read; reading appends no event.
    assert shown == dict(per_actor)
    assert [a.events for a in board.activity_rows] == sorted(shown.values(), reverse=True)
    newest = max(e.seq for e in log)
    assert f">{newest}<" in board.events.value
    assert board.verification is None and "not verified yet" in board.chain.value


def test_chain_verified_on_open_and_a_forged_record_is_named(dash, tmp_path):
    s = dash.stack
    board = PlatformSummaryDashboard(s.admin)  # small store: verified when it opens
    assert board.verification is not None and board.verification.ok
    assert "All chains verified" in board.chain.value
    assert {"nexml-summary-chain", "nexml-summary-verify"} <= classes(board)
    # Alter one decision in the database, then press Verify.
    engine = create_engine(s.settings.database_url)
    try:
        with engine.begin() as conn:
            old = conn.execute(text(
                "SELECT subject_id FROM prediction_records WHERE seq = 5 AND deployment_id = "
                "(SELECT id FROM deployments WHERE name = 'main')")).scalar_one()
            conn.execute(text(
                "UPDATE prediction_records SET subject_id = 'forged' WHERE seq = 5 AND "
                "deployment_id = (SELECT id FROM deployments WHERE name = 'main')"))
        board.verify_button.click()
        assert not board.verification.ok
        assert board.verification.first_failure.chain == "predictions:main"
        assert "BROKEN at record 5" in board.chain.value
        assert board.message.kind == "error" and "predictions:main" in board.message.text
    finally:
        with engine.begin() as conn:  # put it back for the other tests of this module
            conn.execute(text(
                "UPDATE prediction_records SET subject_id = :old WHERE seq = 5 AND "
                "deployment_id = (SELECT id FROM deployments WHERE name = 'main')"),
                {"old": old})
        engine.dispose()
    board.verify_button.click()
    assert board.verification.ok


def test_sections_a_role_may_not_read_are_absent(dash):
    s = dash.stack
    ds = PlatformSummaryDashboard(s.dana, verify_on_open=False)
    present = classes(ds)
    assert "nexml-summary-inventory" in present and "nexml-summary-approvals" in present
    for absent in ("nexml-summary-events", "nexml-summary-chain", "nexml-summary-verify",
                   "nexml-summary-activity", "nexml-summary-users"):
        assert absent not in present
    assert ds.chain is None and ds.verify_button is None and ds.events is None
    # Deployments without traffic numbers: decisions are not a data scientist's to read.
    assert ds.health == [] and "main" in ds.deployments.value
    assert "recorded decisions, which your role may not read" in ds.deployments.value
    assert ds.counts == s.admin.inventory()
    # ... and the Workspace refuses those reads anyway.
    for read in (s.dana.recent_events, s.dana.activity, s.dana.deployment_health,
                 s.dana.audit.verify):
        with pytest.raises(PermissionDenied):
            read()
    manager = PlatformSummaryDashboard(s.mark, verify_on_open=False)
    assert "nexml-summary-chain" not in classes(manager)
    assert "nexml-summary-compliance" in classes(manager)
    officer = PlatformSummaryDashboard(s.cora, verify_on_open=False)
    assert {"nexml-summary-chain", "nexml-summary-activity"} <= classes(officer)
    assert "nexml-summary-users" not in classes(officer)
    admin = PlatformSummaryDashboard(s.admin, verify_on_open=False)
    assert ">compliance_officer<" in admin.users.value


def test_alert_text_is_escaped():
    html = alerts_table([{"id": 1, "kind": "drift", "severity": "alert", "status": "open",
                          "subject_ref": "deployment:main", "message": "<script>x</script>"}])
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'class="open"' in html
