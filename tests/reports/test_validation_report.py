"""The validation report: notebooks/validation.ipynb run by papermill on the German credit model.

Its numbers are the platform's validation record (the same computation, recorded from the run
and linked to the report), an approval made after it names the report, and a copy edited by
hand is not evidence. One validation report per backend is made for the module (each papermill
run costs seconds); the job, CLI and browser tests add one run each.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import pytest

from nexml_ext.errors import IntegrityError, InvalidInput, PermissionDenied
from nexml_ext.workspace.core import PLATFORM_USER
from tests.reports.conftest import ARTIFACTS, documented_world, nexml
from tests.workspace.conftest import World

FINDINGS = "Validation report read: AUC interval above the template minimum; no adverse impact."


@dataclass
class Validated:
    stack: Any
    backend: str
    world: World
    ref: str
    report: Any  # views.Report
    html: bytes
    validation: Any  # views.Validation recorded from the report
    in_process: Any  # views.Validation from ws.validate() on the same version and data
    approval: Any


@pytest.fixture(scope="module")
def validated(module_stack, model_dir, german, tmp_path_factory) -> Validated:
    backend, s = module_stack
    world, version = documented_world(s, model_dir, german, tmp_path_factory, "validation")
    in_process = s.mia.validate(version.ref, dataset=world.holdout)
    report = s.mark.make_report("validation", subject=version.ref, dataset=world.holdout)
    (validation,) = [v for v in s.mark.validations(version.ref) if v.report_id == report.id]
    approval = s.mia.approve(version.ref, findings=FINDINGS)
    data = s.mark.report_html(report.id)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"validation-{backend}.html").write_bytes(data)
    return Validated(s, backend, world, version.ref, report, data, validation, in_process,
                     approval)


def _table(page: str, css: str) -> str:
    found = re.search(rf'<table class="nexml-table {css}">(.*?)</table>', page, re.S)
    assert found, f"no {css} table"
    return found.group(1)


def _rows(table: str) -> list[list[str]]:
    """The text of each body row's cells (unescaped)."""
    body = table.split("<tbody>", 1)[1]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
         for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_report_is_recorded_done_with_its_validation(validated):
    r, v = validated.report, validated.validation
    assert (r.kind, r.status, r.subject, r.created_by) == ("validation", "done", validated.ref,
                                                           "mark")
    assert r.title == f"Validation report: {validated.ref} on credit-holdout:1"
    assert r.params == {"model_ref": validated.ref, "dataset_ref": "credit-holdout:1"}
    assert (v.run_by, v.requested_by, v.dataset) == (PLATFORM_USER, "mark", "credit-holdout:1")
    assert v.artifact_sha256 == validated.stack.mark.version(validated.ref).artifact_sha256
    assert r.summary["validation_id"] == v.id and r.summary["status"] == v.status == "passed"
    # One transaction: the validation's event names the report, right before report.make.
    log = validated.stack.admin.audit.log()
    recorded = next(e for e in log if e.action == "validation.record"
                    and e.data["validation"] == v.id)
    made = next(e for e in log if e.action == "report.make" and e.object_ref == f"report:{r.id}")
    assert recorded.data["report"] == r.id and made.seq == recorded.seq + 1


def test_the_report_computes_what_validate_computes(validated):
    # ws.validate() in process and the report's run are the same code: identical numbers.
    assert validated.validation.metrics == validated.in_process.metrics
    for key in ("performance", "fairness", "drift", "breaches"):
        assert validated.validation.details[key] == validated.in_process.details[key], key
    assert validated.in_process.report_id is None


def test_html_numbers_equal_the_validation_record(validated):
    page = validated.html.decode("utf-8")
    m, details = validated.validation.metrics, validated.validation.details
    # AUC and its bootstrap interval.
    assert f'data-nexml-metric="ROC AUC">{m["roc_auc"]:.4f}</div>' in page
    assert (f"95% CI {m['roc_auc_ci_low']:.4f} to {m['roc_auc_ci_high']:.4f}") in page
    assert f'data-nexml-metric="KS">{m["ks"]:.4f}</div>' in page
    # The pass/fail checks, one row per recorded check, in order.
    shown = _rows(_table(page, "nexml-checks"))
    recorded = details["checks"]
    assert [row[0] for row in shown] == [c["check"] for c in recorded]
    assert [row[4] for row in shown] == [c["result"] for c in recorded]
    assert {c["threshold"] for c in recorded} >= {"auc_min", "ks_min", "psi_alert",
                                                  "adverse_impact_ratio_min", "consistency"}
    assert all(c["result"] == "pass" for c in recorded)
    assert "Validation PASSED" in page
    # PSI of every input.
    psi = {row[0]: row[2] for row in _rows(_table(page, "nexml-drift"))}
    assert psi == {c: f"{r['psi']:.4g}" for c, r in details["drift"]["columns"].items()}
    # Fairness: each group's adverse impact ratio, per protected attribute.
    tables = re.findall(r'<table class="nexml-table nexml-fairness">(.*?)</table>', page, re.S)
    attributes = details["fairness"]["attributes"]
    assert len(tables) == len(attributes) == 2  # sex and age
    shown = sorted([(row[0], row[4]) for row in _rows(table)] for table in tables)
    assert shown == sorted(
        [(g["group"], "" if g["air"] is None else f"{g['air']:.4g}") for g in found["groups"]]
        for found in attributes.values()
    )
    # The cover names the artifact and the data the report is about.
    assert validated.validation.artifact_sha256 in page and "credit-holdout:1" in page
    for section in ("Data quality", "Prediction consistency", "Performance", "ROC and KS",
                    "Drift against the training baseline", "Explanations",
                    "Fairness by protected attribute", "Inference latency"):
        assert f">{section}<" in page, section
    figures = re.findall(r'<img alt="[^"]+" class="nexml-figure" src="data:image/png', page)
    assert len(figures) >= 6
    assert "platform_workspace" not in page and "NEXML_REPORT_GRANT" not in page


def test_data_quality_and_consistency_are_recorded(validated):
    details = validated.validation.details
    quality = details["data_quality"]
    assert quality["rows"] == 250 and quality["missing_columns"] == []
    assert quality["changed_types"] == [] and set(quality["class_balance"]) == {"0", "1"}
    assert sum(quality["class_balance"].values()) == pytest.approx(1)
    assert [c["result"] for c in details["consistency"]] == ["pass"] * 3
    assert details["latency"]["batch_rows"] == 250 and details["latency"]["single_rows_timed"] == 50


def test_the_approval_names_the_report_it_rests_on(validated):
    s, approval = validated.stack, validated.approval
    assert (approval.validation_id, approval.report_id) == (validated.validation.id,
                                                            validated.report.id)
    (listed,) = s.mark.approvals(validated.ref)
    assert listed.report_id == validated.report.id
    (event,) = s.admin.audit.log(action="model.approve", object=validated.ref)
    assert (event.data["validation"], event.data["report"]) == (validated.validation.id,
                                                                validated.report.id)


def test_a_hand_edited_validation_report_is_not_evidence(validated, tmp_path):
    s, page = validated.stack, validated.html
    assert s.cora.verify_report(page).id == validated.report.id
    auc = f"{validated.validation.metrics['roc_auc']:.4f}"
    edited = page.replace(f'data-nexml-metric="ROC AUC">{auc}'.encode(),
                          b'data-nexml-metric="ROC AUC">0.9900')
    assert edited != page
    with pytest.raises(IntegrityError, match="not a platform report: .* edited by hand"):
        s.cora.verify_report(edited)
    assert not s.mark.report_is_authentic(edited)
    copy = tmp_path / "validation-edited.html"
    copy.write_bytes(edited)
    result = nexml(s.settings, s.tokens["cora"], "report", "verify", str(copy))
    assert result.returncode == 9 and result.stderr.startswith("error: not a platform report")


def test_who_may_have_the_platform_make_a_validation_report(validated):
    s, holdout = validated.stack, validated.world.holdout
    with pytest.raises(PermissionDenied, match="dana may not generate"):
        s.dana.make_report("validation", subject=validated.ref, dataset=holdout)
    with pytest.raises(PermissionDenied, match="cora may not have the platform make a "
                                               "validation report"):
        s.cora.make_report("validation", subject=validated.ref, dataset=holdout)
    with pytest.raises(InvalidInput, match="needs a labelled dataset version"):
        s.mark.make_report("validation", subject=validated.ref)
    with pytest.raises(InvalidInput, match="takes no dataset"):
        s.mark.make_report("compliance", subject=validated.ref, dataset=holdout)
    with pytest.raises(PermissionDenied, match="dana may not have the platform make a "
                                               "validation report"):
        s.dana.submit_job("report-validation", {"ref": validated.ref, "dataset": holdout})
    # The author sees the validation report of her own version.
    assert validated.report.id in [r.id for r in s.dana.reports(kind="validation")]
    assert s.dana.report_html(validated.report.id) == validated.html


def test_the_validation_job_a_data_scientist_submits_makes_the_report(validated):
    from nexml_ext.jobs import Worker

    s = validated.stack
    version = validated.world.staged(s.dana)
    queued = s.dana.submit_job("validation", {"ref": version.ref,
                                              "dataset": validated.world.holdout})
    ran = Worker(s.admin).run_once()
    assert ran is not None and ran.id == queued.id
    job = s.dana.job(queued.id)
    assert job.status == "succeeded", job.error
    report = s.dana.report(job.result["report"])
    assert (report.kind, report.job_id, report.created_by) == ("validation", job.id, "dana")
    (validation,) = s.dana.validations(version.ref)
    assert (validation.report_id, validation.requested_by) == (report.id, "dana")
    assert job.result["validation"] == validation.id
    assert job.result["html_sha256"] == report.html_sha256
    assert s.mark.report_is_authentic(s.dana.report_html(report.id))


def test_cli_report_validation_writes_the_html(validated, tmp_path):
    s = validated.stack
    version = validated.world.staged(s.dana)
    out = tmp_path / "validation.html"
    result = nexml(s.settings, s.tokens["mark"], "report", "validation", version.ref,
                   "--dataset", validated.world.holdout, "--out", str(out))
    assert result.returncode == 0, result.stderr
    (validation,) = s.mark.validations(version.ref)
    report = s.mark.report(validation.report_id)
    assert f"report #{report.id} (Validation report: {version.ref} on credit-holdout:1)" \
        in result.stdout
    assert f"validation #{validation.id} passed; html sha256 {report.html_sha256}" \
        in result.stdout
    assert s.mark.verify_report(out).id == report.id
    refused = nexml(s.settings, s.tokens["mark"], "report", "validation", version.ref,
                    "--out", str(tmp_path / "x.html"))
    assert refused.returncode == 2 and "--dataset" in refused.stderr


def test_validation_report_in_chromium(validated, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM
    from tests.reports.test_browser import Visit

    source = tmp_path / "validation.html"
    source.write_bytes(validated.html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            visit = Visit(browser, source)
            shot = visit.screenshot(f"validation-{validated.backend}.png")
            assert shot.stat().st_size > 10_000
            assert visit.requests == [visit.url]  # nothing fetched
            assert visit.console_errors == [] and visit.dialogs == []
            page = visit.page
            assert page.evaluate("document.scripts.length") == 0
            auc = page.locator('[data-nexml-metric="ROC AUC"]')
            assert auc.inner_text() == f"{validated.validation.metrics['roc_auc']:.4f}"
            assert page.title() == validated.report.title
            page.get_by_role("link", name="Fairness by protected attribute").click()
            assert page.evaluate("location.hash") == "#Fairness-by-protected-attribute"
        finally:
            browser.close()
