"""The manager's approvals dashboard, driven from Python against a real store on each backend.

One platform validation report is made per backend for the module (a papermill run); the other
versions are validated in process. Clicks go through the widget to the Workspace: an approval
and a deployment change the store and append their events; a refusal (no findings, one's own
version, a bad deployment name) is one sentence in the status line and changes nothing; a data
scientist's dashboard has no decision or deploy controls at all.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import pytest

from nexml_ext.errors import InvalidInput, PermissionDenied
from nexml_ext.jupyter.widgets.approvals import ApprovalsDashboard
from tests.workspace.conftest import World, module_world

# One real store per backend for the module (module_stack, tests/conftest.py).

FINDINGS = "Read the validation report: AUC interval above the minimum, no adverse impact."


@dataclass
class Queue:
    stack: Any
    world: World
    reported: Any  # staged by dana, documented, with a platform validation report
    report: Any  # views.Report
    validated: Any  # staged by dana, documented, validated in process
    own: Any  # staged by mark himself, documented, validated in process
    bare: Any  # staged by dave, nothing else


@pytest.fixture(scope="module")
def queue(module_stack, model_dir, german, tmp_path_factory) -> Queue:
    backend, s = module_stack
    world = module_world(s, model_dir, german, tmp_path_factory, "approvals")
    reported = world.staged(s.dana, "credit-risk")
    world.document(s.dana, reported.ref)
    report = s.mark.make_report("validation", subject=reported.ref, dataset=world.holdout)
    validated = world.ready(s.dana, "fraud-score")
    own = world.staged(s.mark, "own-model")
    world.document(s.mark, own.ref)
    s.mia.validate(own.ref, dataset=world.holdout)
    bare = world.staged(s.dave, "bare-model")
    return Queue(s, world, reported, report, validated, own, bare)


def classes(widget: widgets.Widget) -> set[str]:
    """Every CSS class in a widget tree (checking each widget's state serialises)."""
    widget.get_state()
    found = set(getattr(widget, "_dom_classes", ()))
    for child in getattr(widget, "children", ()):
        found |= classes(child)
    return found


def events(ws, action: str, ref: str) -> list:
    return ws.audit.log(action=action, object=ref)


def test_the_queue_shows_each_version_with_its_evidence(queue):
    s = queue.stack
    board = ApprovalsDashboard(s.mark)
    refs = {queue.reported.ref, queue.validated.ref, queue.own.ref, queue.bare.ref}
    assert refs <= set(board.rows)
    assert all(board.rows[r].status == "staging" for r in refs)
    assert {"nexml-approvals", "nexml-approvals-row", "nexml-approvals-findings",
            "nexml-approvals-approve", "nexml-approvals-reject", "nexml-approvals-status",
            "nexml-approvals-report"} <= classes(board)

    # The report is shown in place: a sandboxed iframe whose srcdoc is the stored HTML exactly.
    frame = board.rows[queue.reported.ref].report.value
    found = re.search(r'<iframe [^>]*sandbox="" [^>]*srcdoc="([^"]*)"', frame)
    assert found, frame[:300]
    assert html.unescape(found.group(1)) == s.mark.report_html(queue.report.id).decode("utf-8")
    assert "No platform validation report" in board.rows[queue.bare.ref].report.value
    assert "validated in process only" in board.rows[queue.validated.ref].report.value

    # The summary's numbers are the Workspace's: compliance, fairness, drift, latency.
    (validation,) = [v for v in s.mark.validations(queue.reported.ref)
                     if v.report_id == queue.report.id]
    summary = html.unescape(board.rows[queue.reported.ref].summary.value)
    state = s.mark.compliance(queue.reported.ref).state()
    assert f"{state.score.total}/100 (risk tier {state.tier})" in summary
    done = sum(st.complete for st in state.statuses.values())
    assert f"{done} of 12" in summary
    drift = validation.details["drift"]
    worst = max(c["psi"] for c in drift["columns"].values())
    assert (f"{drift['n_alert']} alert, {drift['n_warn']} warning of {drift['n_columns']} "
            f"inputs; highest PSI {worst:.3f}") in summary
    assert validation.details["fairness"]["flagged"] == {}
    assert "fairness flags" in summary and "none (adverse impact ratio" in summary
    latency = validation.details["latency"]
    assert f"one row p50 {latency['single_row_p50_ms']:.2f} ms" in summary
    assert f"AUC {validation.metrics['roc_auc']:.3f}" in summary
    assert f"passed on credit-holdout:1 (report #{queue.report.id}" in summary
    bare = html.unescape(board.rows[queue.bare.ref].summary.value)
    assert "none of this artifact yet" in bare and "mandatory sections missing" in bare


def test_a_decision_without_findings_is_refused_and_changes_nothing(queue):
    s, ref = queue.stack, queue.validated.ref
    board = ApprovalsDashboard(s.mark)
    before = len(s.admin.audit.log())
    row = board.rows[ref]
    row.findings.value = "   "
    row.approve_button.click()
    assert board.status.kind == "error"
    assert board.status.text == (
        f"Not approved: write your findings for {ref} first; a decision without findings is "
        "refused."
    )
    assert s.mark.version(ref).status == "staging"
    assert len(s.admin.audit.log()) == before
    with pytest.raises(InvalidInput, match="findings are required"):  # the Workspace too
        s.mark.approve(ref, findings="  ")
    assert s.mark.version(ref).status == "staging"


def test_approving_ones_own_version_is_refused_plainly(queue):
    s, ref = queue.stack, queue.own.ref
    board = ApprovalsDashboard(s.mark)
    board.rows[ref].findings.value = FINDINGS
    board.rows[ref].approve_button.click()
    assert board.status.kind == "error"
    assert "mark" in board.status.text and ref in board.status.text
    assert "Traceback" not in board.status.value and "\n" not in board.status.text
    with pytest.raises(PermissionDenied) as refused:
        s.mark.approve(ref, findings=FINDINGS)
    assert board.status.text == str(refused.value)
    assert s.mark.version(ref).status == "staging"
    assert events(s.admin, "model.approve", ref) == []
    # The refused row is still there, with what was typed kept.
    assert board.rows[ref].findings.value == FINDINGS


def test_approving_without_a_validation_is_refused(queue):
    s, ref = queue.stack, queue.bare.ref
    board = ApprovalsDashboard(s.mia)
    board.rows[ref].findings.value = FINDINGS
    board.rows[ref].approve_button.click()
    assert board.status.kind == "error" and "validat" in board.status.text
    assert s.mia.version(ref).status == "staging"


def test_a_manager_approves_the_reported_version_and_deploys_it(queue):
    s, ref = queue.stack, queue.reported.ref
    board = ApprovalsDashboard(s.mia)
    board.rows[ref].findings.value = FINDINGS
    board.rows[ref].approve_button.click()
    assert (board.status.kind, board.status.text) == ("ok", f"{ref} approved by mia.")
    assert s.mia.version(ref).status == "approved"
    (approved,) = events(s.admin, "model.approve", ref)
    assert approved.actor == "mia" and approved.data["findings"] == FINDINGS
    assert approved.data["report"] == queue.report.id

    # Refreshed: the row now offers a deployment, not a decision, and keeps the report.
    row = board.rows[ref]
    assert row.status == "approved" and row.approve_button is None and row.findings is None
    assert 'srcdoc="' in row.report.value
    assert {"nexml-approvals-deploy", "nexml-approvals-deploy-name",
            "nexml-approvals-size"} <= classes(board)
    assert list(row.size.options) == ["small", "medium", "large"]

    row.deploy_name.value = "Not a name!"
    row.deploy_button.click()
    assert board.status.kind == "error" and "Not a name!" in board.status.text
    assert "Not a name!" not in {d.name for d in s.mia.deployments()}
    assert board.rows[ref].deploy_name.value == "Not a name!"  # kept across the refresh

    row = board.rows[ref]
    row.deploy_name.value = "credit-main"
    row.size.value = "medium"
    row.deploy_button.click()
    assert (board.status.kind, board.status.text) == (
        "ok", f"{ref} deployed as credit-main (medium).")
    (deployment,) = [d for d in s.mia.deployments() if d.name == "credit-main"]
    assert (deployment.model_ref, deployment.size, deployment.status) == (ref, "medium", "active")
    assert s.mia.version(ref).status == "deployed"
    (deployed,) = events(s.admin, "model.deploy", "deployment:credit-main")
    assert deployed.actor == "mia" and deployed.data["size"] == "medium"
    assert ref not in board.rows  # a deployed version has left the queue
    assert s.admin.audit.verify().ok


def test_a_manager_rejects_with_findings(queue):
    s, ref = queue.stack, queue.validated.ref
    board = ApprovalsDashboard(s.mark)
    board.rows[ref].findings.value = "Holdout AUC too close to the minimum; retrain with <more> data."
    board.rows[ref].reject_button.click()
    assert (board.status.kind, board.status.text) == ("ok", f"{ref} rejected by mark.")
    assert s.mark.version(ref).status == "rejected"
    assert ref not in board.rows
    (rejected,) = events(s.admin, "model.reject", ref)
    assert rejected.data["findings"].endswith("retrain with <more> data.")


def test_a_data_scientist_sees_the_queue_but_no_decision_or_deploy_controls(queue):
    s = queue.stack
    board = ApprovalsDashboard(s.dana)
    assert queue.bare.ref in board.rows
    found = classes(board)
    assert "nexml-approvals-row" in found and "nexml-approvals-status" in found
    for absent in ("nexml-approvals-approve", "nexml-approvals-reject",
                   "nexml-approvals-findings", "nexml-approvals-deploy",
                   "nexml-approvals-deploy-name", "nexml-approvals-size"):
        assert absent not in found, absent
    assert all(r.approve_button is None and r.deploy_button is None for r in board.rows.values())
    assert "decisions and deployments are for managers" in board.header.value
    with pytest.raises(PermissionDenied):  # the Workspace refuses anyway
        s.dana.approve(queue.bare.ref, findings=FINDINGS)
