"""Platform-made reports: the templates run by papermill on the German credit model, their HTML
against what the Workspace says, chain heads, tampering, authenticity, and who may do what."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import timedelta

import nbformat
import pytest
from bs4 import BeautifulSoup

from nexml_ext.errors import (
    AuthenticationFailed,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ReportFailed,
)
from nexml_ext.governance import tokens
from nexml_ext.reports.context import platform_workspace
from nexml_ext.store import tables as t
from nexml_ext.store.database import Database
from nexml_ext.workspace import Workspace
from tests.reports.conftest import FINDINGS, SCRIPT, TAMPERED_SEQ, nexml


def soup(data: bytes) -> BeautifulSoup:
    return BeautifulSoup(data.decode("utf-8"), "html.parser")


def table_rows(page: BeautifulSoup, css: str) -> list[list[str]]:
    table = page.select_one(f"table.{css}")
    assert table is not None, f"no table.{css} in the report"
    return [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in table.select("tbody tr")]


def facts_of(page: BeautifulSoup) -> dict[str, str]:
    cover = page.select_one("header.nexml-cover")
    return {dt.get_text(strip=True): dd.get_text(strip=True)
            for dt, dd in zip(cover.find_all("dt"), cover.find_all("dd"), strict=True)}


def shown_heads(page: BeautifulSoup) -> dict[str, dict[str, object]]:
    return {chain: {"seq": int(seq), "hash": digest}
            for chain, seq, digest in table_rows(page, "nexml-heads")}


# --- the compliance report ------------------------------------------------------------------


def test_compliance_report_shows_the_workspaces_numbers(reported):
    page = soup(reported.compliance_html)
    report = reported.compliance
    assert report.status == "done" and report.kind == "compliance"
    assert report.subject == reported.ref
    metric = page.select_one('[data-nexml-metric="Compliance score"]')
    assert metric.get_text(strip=True) == f"{reported.score}/100"
    facts = facts_of(page)
    assert facts["Model version"] == reported.ref
    assert facts["Artifact SHA-256"] == reported.artifact_sha256
    assert facts["Made by"].startswith("the nexml-ext 0.1.0 platform, asked by cora")
    assert "#" + str(report.id) in facts["Report"]
    # Approvals and their findings, as written (escaped, so the <b> shows as text).
    text = page.get_text(" ")
    assert FINDINGS in text
    assert "Risk tier" in text and f"{reported.tier} (" in text
    assert report.summary["score"] == reported.score
    # Contents: one entry per section heading, each pointing at a heading that exists.
    links = [a["href"] for a in page.select("nav.nexml-contents a")]
    assert len(links) == 6
    for href in links:
        assert page.find(id=href[1:]) is not None, href


def test_compliance_report_carries_the_chain_heads_it_was_made_at(reported):
    page = soup(reported.compliance_html)
    heads = shown_heads(page)
    assert heads == reported.compliance.chain_heads
    # The run read the chains right after its own report.start event, which it therefore anchors.
    start = reported.stack.cora.audit.log(action="report.start", object=f"report:{reported.compliance.id}")
    assert [e.seq for e in start] == [heads["events"]["seq"]]
    assert start[0].hash == heads["events"]["hash"]
    assert heads["events"]["seq"] == reported.heads_before["events"]["seq"] + 1
    made = reported.stack.cora.audit.log(action="report.make", object=f"report:{reported.compliance.id}")
    assert len(made) == 1
    assert made[0].data["html_sha256"] == hashlib.sha256(reported.compliance_html).hexdigest()
    assert made[0].data["chain_heads"] == heads


def test_script_typed_into_a_compliance_field_is_text_not_markup(reported):
    raw = reported.compliance_html.decode("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert SCRIPT not in raw
    page = soup(reported.compliance_html)
    assert SCRIPT in page.get_text()
    assert page.find("script") is None  # the page runs no script at all
    assert page.find("b") is None  # the <b> in the findings stayed text too


def test_report_pages_fetch_nothing_from_outside(reported):
    for data in (reported.compliance_html, reported.audit_html):
        page = soup(data)
        assert page.find("link") is None
        for tag in page.find_all(src=True):
            assert tag["src"].startswith("data:"), tag
        for tag in page.find_all(href=True):
            assert tag["href"].startswith("#"), tag
        css = "\n".join(style.get_text() for style in page.find_all("style"))
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)  # URLs in comments are not fetched
        assert "@import" not in css
        assert re.findall(r"url\(\s*['\"]?(?!data:)", css) == []
        assert page.find("input") is None  # inputs hidden: no code in the page
        assert "platform_workspace" not in data.decode("utf-8")
        # Charts are inline PNG.
        assert page.select('img[src^="data:image/png;base64,"]')


# --- the audit report -----------------------------------------------------------------------


def test_audit_report_counts_decisions_as_the_workspace_does(reported):
    page = soup(reported.audit_html)
    rows = table_rows(page, "nexml-decisions")
    shown = {
        (dep, ref): {"decisions": int(n), "approved": int(a), "declined": int(d),
                     "shadow": int(sh)}
        for dep, ref, _sha, n, a, d, _ar, _dr, sh in rows
    }
    assert shown == reported.decisions
    assert sum(v["decisions"] for v in shown.values()) == 40
    (dep, ref), counts = next(iter(reported.decisions.items()))
    rate = next(r for r in rows if r[0] == dep)[6]
    assert rate == f"{100 * counts['approved'] / counts['decisions']:.1f}%"
    assert reported.audit.summary["verification"]["ok"] is True
    assert page.select_one(".nexml-alert") is None
    assert "Audit-chain verification passed" in page.get_text()
    facts = facts_of(page)
    assert facts["Period"] == f"{reported.since} to {reported.until} (UTC, both days included)"
    assert reported.audit.period == f"{reported.since} to {reported.until}"


def test_audit_report_lists_the_chain_heads_and_samples_reasons(reported):
    page = soup(reported.audit_html)
    heads = shown_heads(page)
    assert heads == reported.audit.chain_heads
    assert set(heads) == {"events", "predictions:main"}
    assert heads["predictions:main"]["seq"] == 40
    # The record keeps them too, and the recorded event says the same.
    made = reported.stack.cora.audit.log(action="report.make", object=f"report:{reported.audit.id}")
    assert made[0].data["chain_heads"] == heads
    # Declined applications are shown with the reasons recorded when they were decided.
    samples = reported.audit.summary["samples"]
    assert 0 < len(samples) <= 5
    first = reported.stack.cora.find_decisions(request_id=samples[0])[0]
    text = page.get_text(" ")
    assert first.reasons and all(r["reason"] in text for r in first.reasons)
    # Compliance scores of the version involved, as the Workspace computes them.
    scores = {ref: int(score) for ref, score, *_ in table_rows(page, "nexml-compliance")}
    assert scores == {reported.ref: reported.score}


def test_tampered_chain_shows_a_red_banner_naming_chain_and_record(reported):
    page = soup(reported.tampered_html)
    alert = page.select_one("div.nexml-alert")
    assert alert is not None
    assert "FAILED" in alert.get_text()
    assert f"chain predictions:main is broken at record {TAMPERED_SEQ}" in alert.get_text()
    # It is the first thing in the page, before the cover.
    main = page.find("main")
    first = next(child for child in main.children if getattr(child, "name", None))
    assert first is alert
    assert "Audit-chain verification FAILED" in page.get_text()
    verification = reported.tampered.summary["verification"]
    assert verification["ok"] is False
    broken = [c for c in verification["chains"] if not c["ok"]]
    assert [(c["chain"], c["first_bad_seq"]) for c in broken] == [("predictions:main", TAMPERED_SEQ)]
    assert reported.tampered.status == "done"  # a failed verification is a finding, not a failure


# --- records, artifacts, authenticity ------------------------------------------------------


def test_report_records_and_stored_artifacts(reported):
    cora = reported.stack.cora
    report = cora.report(reported.audit.id)
    assert report.html_sha256 == hashlib.sha256(reported.audit_html).hexdigest()
    notebook = cora.report_notebook(report.id)
    assert hashlib.sha256(notebook).hexdigest() == report.notebook_sha256
    nb = nbformat.reads(notebook.decode("utf-8"), as_version=4)
    assert nb.metadata["nexml"]["report_id"] == report.id
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and reported.since in injected[0].source
    assert "nxg_" not in notebook.decode("utf-8")  # the run's grant is not in the evidence
    assert report.params == {"since": reported.since, "until": reported.until}
    assert report.period_start.date().isoformat() == reported.since
    listed = [r.id for r in cora.reports()]
    assert {reported.compliance.id, reported.audit.id, reported.tampered.id} <= set(listed)
    assert listed == sorted(listed, reverse=True)
    assert [r.kind for r in cora.reports(kind="compliance")] == ["compliance"] * len(
        cora.reports(kind="compliance"))
    # The grant died with the run.
    db = Database(reported.settings.database_url)
    try:
        with db.read() as s:
            row = s.get(t.Report, report.id)
            assert row.grant_sha256 is None and row.finished_at is not None
    finally:
        db.dispose()


def test_an_edited_report_is_not_authentic(reported, tmp_path):
    cora = reported.stack.cora
    original = reported.compliance_html
    assert cora.report_is_authentic(original)
    assert cora.verify_report(original).id == reported.compliance.id
    edited = original.replace(f"{reported.score}/100".encode(), b"100/100", 1)
    edited = edited if edited != original else original.replace(b"approved", b"Approved", 1)
    assert edited != original
    assert not cora.report_is_authentic(edited)
    with pytest.raises(IntegrityError, match="not a platform report"):
        cora.verify_report(edited)
    # The same through the CLI, on files.
    good, bad = tmp_path / "report.html", tmp_path / "edited.html"
    good.write_bytes(original)
    bad.write_bytes(edited)
    ok = nexml(reported.settings, reported.token("cora"), "report", "verify", str(good))
    assert ok.returncode == 0, ok.stderr
    assert f"authentic: report #{reported.compliance.id}" in ok.stdout
    refused = nexml(reported.settings, reported.token("cora"), "report", "verify", str(bad))
    assert refused.returncode == 9
    assert refused.stderr.startswith("error: not a platform report")
    assert "Traceback" not in refused.stderr


# --- who may ask, and what a run may do -----------------------------------------------------


def test_who_may_make_and_see_reports(reported):
    s = reported.stack
    with pytest.raises(PermissionDenied, match="data_scientist dana may not generate"):
        s.dana.make_report("compliance", subject=reported.ref)
    with pytest.raises(PermissionDenied, match="manager mark may not have the platform make"):
        s.mark.make_report("audit", since=reported.since, until=reported.until)
    with pytest.raises(PermissionDenied, match="on behalf of dana"):
        s.cora.make_report("compliance", subject=reported.ref, requested_by="dana")
    # Data scientists see the reports about their own versions, and nothing else.
    mine = s.dana.reports()
    assert mine and {r.subject for r in mine} == {reported.ref}
    assert s.dave.reports() == []
    with pytest.raises(PermissionDenied, match="only its author \\(dana\\) may"):
        s.dave.report(reported.compliance.id)
    with pytest.raises(PermissionDenied, match="dana may not view report"):
        s.dana.report(reported.audit.id)
    assert s.dana.report_html(reported.compliance.id) == reported.compliance_html
    # Bad requests are refused before anything runs.
    before = len(s.cora.reports(limit=1000))
    with pytest.raises(InvalidInput, match="needs a model version"):
        s.cora.make_report("compliance")
    with pytest.raises(InvalidInput, match="starts after it ends"):
        s.cora.make_report("audit", since="2026-02-01", until="2026-01-01")
    with pytest.raises(InvalidInput, match="invalid month"):
        s.cora.make_report("audit", month="2026-13")
    with pytest.raises(InvalidInput, match="unknown report kind"):
        s.cora.make_report("gossip")
    with pytest.raises(NotFound):
        s.cora.make_report("compliance", subject="credit-risk:99")
    assert len(s.cora.reports(limit=1000)) == before


def _running_row(settings, kind: str, *, expires_in: timedelta) -> tuple[int, str]:
    """A report row in the running state, as make_report writes it, with a known grant."""
    secret = tokens.new_token()[1]
    db = Database(settings.database_url)
    try:
        with db.write() as s:
            row = t.Report(kind=kind, title="test run", status="running", created_by="cora",
                           params={}, summary={}, chain_heads={},
                           grant_sha256=tokens.hash_secret(secret),
                           grant_expires_at=t.utcnow() + expires_in)
            s.add(row)
            s.flush()
            return row.id, f"nxg_{row.id}_{secret}"
    finally:
        db.dispose()


def test_a_report_runs_grant_reads_only_what_its_kind_needs(reported, monkeypatch):
    settings = reported.settings
    report_id, grant = _running_row(settings, "compliance", expires_in=timedelta(minutes=5))
    ws = Workspace.open_report_run(settings, grant)
    try:
        assert ws.principal.role.value == "platform"
        assert ws.compliance(reported.ref).score().total == reported.score
        with pytest.raises(PermissionDenied, match=f"report {report_id} may only read"):
            ws.audit.log()
        with pytest.raises(PermissionDenied, match="may only read"):
            ws.find_decisions(limit=1)
        with pytest.raises(PermissionDenied, match="may only read"):
            ws.retire(reported.ref, reason="no")
        with pytest.raises(PermissionDenied, match="only reads"), ws._as_platform()._write():
            pass
    finally:
        ws.close()

    audit_id, audit_grant = _running_row(settings, "audit", expires_in=timedelta(minutes=5))
    ws = Workspace.open_report_run(settings, audit_grant)
    try:
        assert ws.audit.log(limit=1)
        with pytest.raises(PermissionDenied, match="may only read"):
            ws.record_outcomes([{"subject_id": "applicant-1", "outcome": 1}])
    finally:
        ws.close()

    wrong = grant[:-4] + ("AAAA" if not grant.endswith("AAAA") else "BBBB")
    for refused in (wrong, "nxm_0123456789abcdef_" + "A" * 43, ""):
        with pytest.raises(AuthenticationFailed, match="report grant refused"):
            Workspace.open_report_run(settings, refused)
    _, expired = _running_row(settings, "compliance", expires_in=timedelta(seconds=-1))
    with pytest.raises(AuthenticationFailed, match="outlived its time limit"):
        Workspace.open_report_run(settings, expired)
    # Outside a report run's kernel there is no grant at all.
    monkeypatch.delenv("NEXML_REPORT_GRANT", raising=False)
    with pytest.raises(AuthenticationFailed, match="no report grant"):
        platform_workspace()
    # A run whose time ran out without finishing (its process was killed) shows as abandoned.
    assert reported.stack.cora.report(report_id).status == "running"
    assert reported.stack.cora.report(int(expired.split("_")[1])).status == "abandoned"


def test_a_template_that_fails_is_recorded_as_failed(reported, tmp_path, monkeypatch):
    """A template that raises ends the run: ReportFailed naming the error, the report recorded
    as failed with no artifacts, its grant gone, and report.start / report.fail in the chain."""
    from nexml_ext.reports import kinds

    broken = tmp_path / "broken.ipynb"
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('model_ref = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('raise RuntimeError("the template broke on " + model_ref)'),
    ])
    book.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                   "display_name": "Python 3"}
    nbformat.write(book, broken)
    monkeypatch.setitem(kinds.KINDS, "compliance",
                        replace(kinds.KINDS["compliance"], notebook=str(broken)))
    cora = reported.stack.cora
    with pytest.raises(ReportFailed, match=f"RuntimeError: the template broke on {reported.ref}"):
        cora.make_report("compliance", subject=reported.ref, timeout=120)
    failed = cora.reports(kind="compliance", limit=1)[0]
    assert failed.status == "failed" and "the template broke" in failed.error
    assert failed.html_sha256 is None and failed.notebook_sha256 is None
    with pytest.raises(NotFound, match="it is failed"):
        cora.report_html(failed.id)
    events = cora.audit.log(object=f"report:{failed.id}")
    assert [e.action for e in events] == ["report.start", "report.fail"]
    with pytest.raises(InvalidInput, match="whole seconds"):
        cora.make_report("compliance", subject=reported.ref, timeout=0)


def test_cli_audit_report_for_a_month_and_the_list(reported, tmp_path):
    month = reported.since[:7]
    out = tmp_path / "out" / "audit.html"
    made = nexml(reported.settings, reported.token("cora"), "report", "audit", "--month", month,
                 "--out", str(out))
    assert made.returncode == 0, made.stderr
    number = int(re.search(r"report #(\d+)", made.stdout).group(1))
    assert reported.stack.cora.verify_report(out.read_bytes()).id == number
    assert "chain predictions:main at record 40" in made.stdout
    listed = nexml(reported.settings, reported.token("cora"), "reports", "--kind", "audit")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.split()[0] == str(number))
    assert "audit" in line and "done" in line and "cora" in line
    refused = nexml(reported.settings, reported.token("dana"), "report", "compliance",
                    reported.ref, "--out", str(tmp_path / "x.html"))
    assert refused.returncode == 4
    assert refused.stderr.startswith("error: permission denied")
    assert not (tmp_path / "x.html").exists()
    both = nexml(reported.settings, reported.token("cora"), "report", "audit", "--month", month,
                 "--since", reported.since, "--out", str(tmp_path / "y.html"))
    assert both.returncode == 2 and "either --month or --since" in both.stderr
    summary = json.loads(json.dumps(reported.stack.cora.report(number).summary))
    assert summary["since"] == f"{month}-01"


def test_report_jobs_run_by_a_worker_for_the_person_who_asked(reported):
    from nexml_ext.jobs import Worker

    s = reported.stack
    with pytest.raises(PermissionDenied, match="manager mark may not have the platform make"):
        s.mark.submit_job("report-audit", {"month": reported.since[:7]})
    with pytest.raises(PermissionDenied, match="data_scientist dana may not generate"):
        s.dana.submit_job("report-compliance", {"ref": reported.ref})
    with pytest.raises(InvalidInput, match="unknown parameter"):
        s.cora.submit_job("report-compliance", {"ref": reported.ref, "month": "2026-01"})
    job = s.cora.submit_job("report-compliance", {"ref": reported.ref})
    assert job.status == "queued"
    ran = Worker(s.admin).run_once()
    assert ran is not None and ran.id == job.id
    done = s.cora.job(job.id)
    assert done.status == "succeeded", done.error
    report = s.cora.report(done.result["report"])
    assert report.job_id == job.id and report.created_by == "cora"
    assert report.status == "done" and report.subject == reported.ref
    assert done.result["html_sha256"] == report.html_sha256
    assert s.cora.report_is_authentic(s.cora.report_html(report.id))
    made = s.cora.audit.log(action="report.make", object=f"report:{report.id}")
    assert made[0].actor == "nexml-platform" and made[0].data["requested_by"] == "cora"


def test_drift_report_shows_the_workspaces_psi(reported):
    import pandas as pd

    s = reported.stack
    made = s.cora.make_report("drift", deployment="main", since=reported.since,
                              until=reported.until)
    assert made.subject == "deployment:main" and made.status == "done"
    assert made.title == f"Drift report: main, {reported.since} to {reported.until}"
    page = soup(s.cora.report_html(made.id))
    assert facts_of(page)["Deployment"] == "main"
    answered = [d for d in s.cora.find_decisions(deployment="main", since=reported.since,
                                                 until=reported.until, limit=10_000)
                if not d.shadow]
    # The Workspace's own drift check of the same inputs against the same training profile.
    expected = s.mark.drift(reported.ref, pd.DataFrame([d.inputs for d in answered]))
    shown = {row[0]: row[3] for row in table_rows(page, "nexml-drift")}
    assert shown == {name: "" if c.psi is None else f"{c.psi:.4g}"
                     for name, c in expected.columns.items()}
    summary = made.summary["versions"][reported.ref]
    assert summary["psi"] == {name: c.psi for name, c in expected.columns.items()}
    assert summary["dataset_drift"] == expected.dataset_drift
    assert made.summary["decisions"] == len(answered) == 40
    assert shown_heads(page) == made.chain_heads
    assert s.dana.reports(kind="drift") == []
    with pytest.raises(NotFound, match="deployment 'nowhere' not found"):
        s.cora.make_report("drift", deployment="nowhere", month=reported.since[:7])


def test_cancelling_a_report_job_stops_its_template_mid_run(reported, tmp_path, monkeypatch):
    """A cancel reaches a report job while papermill runs its template: the kernel is killed
    mid-cell, the job ends cancelled, and the report is recorded as failed with who cancelled
    it and nothing made (no HTML, no notebook, report.start then report.fail)."""
    import threading

    from nexml_ext.jobs import Worker
    from nexml_ext.reports import execute, kinds
    from tests.reports.test_stopping import gone, slow_template, wait_until

    monkeypatch.setattr(execute, "CHECK_EVERY", 0.1)
    marker = tmp_path / "pids"
    template = slow_template(tmp_path)
    book = nbformat.read(template, as_version=4)  # the compliance kind's parameter is model_ref
    book.cells[0].source = f'model_ref = ""\nmarker = {str(marker)!r}'
    nbformat.write(book, template)
    monkeypatch.setitem(kinds.KINDS, "compliance",
                        replace(kinds.KINDS["compliance"], notebook=str(template)))
    s = reported.stack
    job = s.cora.submit_job("report-compliance", {"ref": reported.ref})
    worker = threading.Thread(target=Worker(s.admin).run_once)
    worker.start()
    try:
        wait_until(marker.exists, "the template to run")
        assert s.cora.job(job.id).status == "running"
        s.cora.cancel_job(job.id)
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive()
    done = s.cora.job(job.id)
    assert done.status == "cancelled", done.error
    kernel, child = map(int, marker.read_text().split())
    wait_until(lambda: gone(kernel) and gone(child), "the kernel and its child to end")
    [report] = [r for r in s.cora.reports(kind="compliance", limit=50) if r.job_id == job.id]
    assert report.status == "failed" and "cancelled by cora" in report.error
    assert report.html_sha256 is None and report.notebook_sha256 is None
    assert not (tmp_path / "pids.finished").exists()
    events = s.cora.audit.log(object=f"report:{report.id}")
    assert [e.action for e in events] == ["report.start", "report.fail"]
