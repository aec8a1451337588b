"""The compliance dashboard against a real store: scores agree with the Workspace, a compliance
officer has the platform make an audit report for a range and its download link decodes to the
stored report's bytes, and the tier-policy editor saves through the Workspace (and is absent for
those who may not use it)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from nexml_ext.errors import PermissionDenied
from nexml_ext.governance.compliance import CORE_TIER1_SECTIONS
from nexml_ext.jupyter.widgets.compliance_dashboard import ComplianceDashboard
from tests.dashboards.test_platform_summary_widget import classes, dash, pngs, rendered

_ = dash  # the module-scoped store: one deployed model with decisions, one rejected, one staged
LINK = re.compile(r'<a class="nexml-report-link" download="([^"]+)" '
                  r'href="data:text/html;base64,([A-Za-z0-9+/=]+)"')


def decoded(html: str) -> tuple[str, bytes]:
    match = LINK.search(html)
    assert match, html[:300]
    return match.group(1), base64.b64decode(match.group(2))


def test_scores_and_sections_agree_with_the_workspace(dash):
    s = dash.stack
    board = ComplianceDashboard(s.cora)
    refs = {v.ref for v in s.cora.all_versions()}
    assert set(board.scores) == refs == {dash.deployed, dash.staged, dash.rejected}
    for ref, score in board.scores.items():
        assert score == s.cora.compliance(ref).score().total
    # The undocumented version: its missing mandatory sections are listed and flagged.
    board.version.value = dash.staged
    state = s.cora.compliance(dash.staged).state()
    assert state.score.missing_mandatory
    assert f"{state.score.total} / 100" in board.sections.value
    assert 'class="missing"' in board.sections.value
    assert "nexml-compliance-sections" in classes(board)
    board.version.value = dash.deployed
    assert 'class="missing"' not in board.sections.value
    assert all(p.startswith(b"\x89PNG") for p in pngs(board)) and pngs(board)
    policy = s.cora.tier_policy()
    html = rendered(board)
    for section in policy.mandatory[3]:
        assert section in board.policy.value
    assert "credit_scoring" in html and "fair_lending" in html  # the templates


def test_officer_generates_an_audit_report_and_downloads_it(dash):
    s = dash.stack
    board = ComplianceDashboard(s.cora)
    for css in ("nexml-compliance-from", "nexml-compliance-to", "nexml-compliance-generate",
                "nexml-compliance-download", "nexml-compliance-status"):
        assert css in classes(board)
    today = datetime.now(UTC).date()
    board.since.value, board.until.value = today - timedelta(days=2), today + timedelta(days=1)
    board.generate_button.click()
    assert board.status.kind == "ok", board.status.text
    report = board.last_report
    assert report.kind == "audit" and report.status == "done"
    assert report.period == f"{today - timedelta(days=2):%Y-%m-%d} to {today + timedelta(days=1):%Y-%m-%d}"
    assert "every audit chain verified" in board.status.text
    name, data = decoded(board.download.value)
    assert name == f"nexml-report-{report.id}-audit.html"
    assert data == s.cora.report_html(report.id)
    assert s.cora.verify_report(data).id == report.id  # the bytes are the platform's own
    # The past reports list it, and its download is the same bytes.
    assert f"#{report.id} " in board.report_select.options[0][0]
    board.report_select.value = report.id
    board.report_get.click()
    assert decoded(board.past_download.value)[1] == data
    # A range that ends before it starts is refused by the Workspace, shown, nothing made.
    made = len(s.cora.reports())
    board.since.value, board.until.value = today, today - timedelta(days=3)
    board.generate_button.click()
    assert board.status.kind == "error" and "starts after it ends" in board.status.text
    assert board.download.value == "" and len(s.cora.reports()) == made


def test_who_may_not_configure_or_report_gets_no_editor_or_button(dash):
    s = dash.stack
    ds = ComplianceDashboard(s.dana)
    assert ds.policy_save is None and ds.policy_boxes == {}
    assert ds.generate_button is None and ds.tier_save is None
    present = classes(ds)
    for absent in ("nexml-compliance-policy-editor", "nexml-compliance-policy-save",
                   "nexml-compliance-generate", "nexml-compliance-from", "nexml-compliance-tier"):
        assert absent not in present
    assert ds.scores == {v.ref: s.dana.compliance(v.ref).score().total  # reading is allowed
                         for v in s.dana.all_versions()}
    with pytest.raises(PermissionDenied):
        s.dana.set_tier_policy(s.dana.tier_policy().to_dict())
    with pytest.raises(PermissionDenied):
        s.dana.make_report("audit", since="2020-01-01", until="2020-01-31")
    # A manager may ask for compliance reports but not for audit reports (they read the trail).
    manager = ComplianceDashboard(s.mark)
    assert manager.generate_button is None and manager.policy_save is None
    officer = ComplianceDashboard(s.cora)
    assert officer.policy_save is not None and officer.tier_save is not None


def test_policy_editor_saves_through_the_workspace(stack):
    board = ComplianceDashboard(stack.cora)
    before = stack.cora.tier_policy()
    # Tier 1 may never drop a core section: refused by the Workspace, shown, nothing changed.
    core = sorted(CORE_TIER1_SECTIONS)[0]
    board.policy_boxes[(1, core)].value = False
    board.policy_save.click()
    assert board.policy_message.kind == "error" and "tier 1 must keep" in board.policy_message.text
    assert stack.cora.tier_policy() == before
    # Make security mandatory at tier 2 as well: saved, and an event says so.
    board.policy_boxes[(1, core)].value = True
    assert "security" not in before.mandatory[2]
    board.policy_boxes[(2, "security")].value = True
    board.policy_save.click()
    assert board.policy_message.kind == "ok", board.policy_message.text
    after = stack.cora.tier_policy()
    assert after.mandatory[2] == before.mandatory[2] | {"security"}
    assert after.mandatory[1] == before.mandatory[1]
    assert after.purpose_tiers == before.purpose_tiers
    (event,) = stack.cora.audit.log(action="compliance.configure")
    assert event.actor == "cora" and "security" in event.data["after"]["mandatory"]["2"]
    assert "security" in board.policy.value.split("<tr>")[3]  # the tier-2 row shows it
