"""The dashboards as people use them: Debian's Chromium (Playwright) against `nexml dashboards`
on 127.0.0.1, each person signed in with their own token, the widgets found by the
``nexml-<dashboard>-<control>`` classes the dashboards add. Screenshots go to test-artifacts/;
no page may log a JavaScript error.

The world is built once for the module on SQLite: a deployed credit model that has answered
for applicants (so the audit trail has decisions), and two validated, documented versions
waiting in staging — one for the manager to approve and deploy, one the data scientist sees
with no way to decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboards.conftest import DashboardsServer, Person
from tests.workspace.conftest import World, module_world

FINDINGS = "Holdout AUC within the template's bounds; documentation complete <b>and</b> reviewed."


@pytest.fixture(scope="module")
def world(people, model_dir, german, tmp_path_factory) -> World:
    s = people
    world = module_world(s, model_dir, german, tmp_path_factory, "browser")
    live = world.approved(s.dana, "credit-live")
    s.mark.deploy(live.ref, name="main")
    _, key = s.mark.set_route("loans", {"rules": [], "default": "main"})
    rows = german.drop(columns=["risk"]).head(12)
    s.admin._as_platform().predict(
        "loans", rows, subject_ids=[f"applicant-{i}" for i in range(len(rows))], key=key
    )
    world.ready(s.dana, "credit-scorer")   # the manager approves and deploys this one
    world.ready(s.dana, "credit-waiting")  # this one stays in staging
    return world


@pytest.fixture
def server(dashboards_server, world) -> DashboardsServer:
    return dashboards_server


@pytest.fixture
def person(browser, server) -> Iterator[callable]:
    opened: list[Person] = []

    def open_as(name: str, token: str) -> Person:
        someone = Person(browser, server.base)
        opened.append(someone)
        someone.sign_in(token)
        assert someone.page.url == server.base + "/", someone.page.url
        return someone

    log_before = len(server.log.read_text())
    yield open_as
    for someone in opened:
        someone.close()
    # The dashboards' pages sent their kernels only what the lockdown lets through.
    assert "dropped" not in server.log.read_text()[log_before:]


def test_a_data_scientist_opening_approvals_cannot_approve(person, people, world):
    dana = person("dana", people.tokens["dana"])
    # She sees the queue (the waiting version with its evidence), not the decisions.
    dana.open_dashboard("approvals", ".nexml-approvals-row-credit-waiting-1")
    assert "you may read this queue" in dana.page.inner_text(".nexml-approvals")
    assert dana.page.locator(".nexml-approvals-approve").count() == 0
    assert dana.page.locator(".nexml-approvals-reject").count() == 0
    assert dana.page.locator(".nexml-approvals-deploy").count() == 0
    dana.screenshot("dashboards-approvals-data-scientist.png")
    dana.assert_clean()
    assert people.admin.version("credit-waiting:1").status == "staging"


def test_a_manager_approves_a_validated_version_and_deploys_it(person, people, world):
    mark = person("mark", people.tokens["mark"])
    mark.open_dashboard("approvals", ".nexml-approvals-row-credit-scorer-1")
    row = mark.page.locator(".nexml-approvals-row-credit-scorer-1")
    row.locator(".nexml-approvals-findings textarea").fill(FINDINGS)
    mark.screenshot("dashboards-approvals-manager-before.png")
    row.locator(".nexml-approvals-approve").click()
    status = mark.page.locator(".nexml-approvals-status")
    status.get_by_text("credit-scorer:1 approved by mark.").wait_for(timeout=60_000)

    row = mark.page.locator(".nexml-approvals-row-credit-scorer-1")
    row.locator(".nexml-approvals-deploy-name input").fill("scorer")
    row.locator(".nexml-approvals-deploy").click()
    status.get_by_text("credit-scorer:1 deployed as scorer").wait_for(timeout=60_000)
    mark.screenshot("dashboards-approvals-manager-deployed.png")
    mark.assert_clean()

    admin = people.admin
    assert admin.version("credit-scorer:1").status == "deployed"
    approval = admin.approvals("credit-scorer:1")[-1]
    assert (approval.approver, approval.decision, approval.findings) == (
        "mark", "approved", FINDINGS)


def test_the_audit_trail_finds_a_subjects_decision(person, people, world):
    cora = person("cora", people.tokens["cora"])
    cora.open_dashboard("audit_trail", ".nexml-audit-search")
    cora.page.locator(".nexml-audit-subject input").fill("applicant-3")
    cora.page.locator(".nexml-audit-search").click()
    result = cora.page.locator("tr.nexml-audit-result")
    result.first.wait_for(timeout=60_000)
    assert result.count() == 1
    assert "applicant-3" in result.first.inner_text()
    expected = people.admin.find_decisions(subject_id="applicant-3")
    assert len(expected) == 1
    cora.page.locator(".nexml-audit-open").click()
    detail = cora.page.locator(".nexml-audit-detail")
    detail.get_by_text(expected[0].request_id).first.wait_for(timeout=60_000)
    assert "applicant-3" in detail.inner_text()
    cora.screenshot("dashboards-audit-trail.png")
    cora.assert_clean()


def test_a_compliance_officer_downloads_an_audit_report(person, people, world):
    cora = person("cora", people.tokens["cora"])
    cora.open_dashboard("compliance", ".nexml-compliance-generate")
    cora.page.locator(".nexml-compliance-generate").click()
    link = cora.page.locator(".nexml-compliance-download a")
    link.wait_for(timeout=180_000)
    with cora.page.expect_download() as download:
        link.click()
    body = Path(download.value.path()).read_bytes()
    cora.screenshot("dashboards-compliance-report.png")
    cora.assert_clean()
    report = people.admin.verify_report(body)  # byte for byte one the platform made
    assert report.kind == "audit"
    assert download.value.suggested_filename.endswith(".html")


def test_the_cto_sees_the_platform_summary_and_the_monitoring_dashboard(person, people, world):
    ada = person("ada", people.tokens["ada"])
    ada.open_dashboard("platform_summary", ".nexml-summary-inventory")
    summary = ada.page.inner_text(".nexml-summary")
    assert "credit-live:1" in summary or "credit-live" in summary
    assert ada.page.locator(".nexml-summary-chain").count() == 1  # a superadmin verifies chains
    ada.screenshot("dashboards-platform-summary.png")
    ada.open_dashboard("monitoring", ".nexml-monitoring-deployment")
    assert "main" in ada.page.inner_text(".nexml-monitoring-deployment")
    ada.screenshot("dashboards-monitoring.png")
    ada.assert_clean()
