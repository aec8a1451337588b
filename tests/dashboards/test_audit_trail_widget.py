"""The audit-trail dashboard, driven from Python against a real store on each backend.

Decisions are made for real (the platform scoring through two routes onto one deployment);
a compliance officer's dashboard finds one subject's decision among the others, opens it with
its reasons and chain proof, filters by route and date, and exports the selection to a CSV that
decodes to exactly those records. Every look-up and export is an event in the chain.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as widgets
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput, NotFound, PermissionDenied
from nexml_ext.jupyter.widgets import markup
from nexml_ext.jupyter.widgets.audit_trail import AuditTrailDashboard
from tests.workspace.conftest import module_world

# One real store per backend for the module (module_stack, tests/conftest.py).

EVIL = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://attacker.example","open")'  # a spreadsheet would run it


@dataclass
class Trail:
    stack: Any
    ref: str
    main: list[str]  # subject ids scored through route "loans"
    branch: list[str]  # subject ids scored through route "loans-b"


@pytest.fixture(scope="module")
def trail(module_stack, model_dir, german, tmp_path_factory) -> Trail:
    backend, s = module_stack
    world = module_world(s, model_dir, german, tmp_path_factory, "audit")
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"rules": [], "default": "main"})
    _, key_b = s.mark.set_route("loans-b", {"rules": [], "default": "main"})
    rows = german.drop(columns=["risk"])
    platform = s.admin._as_platform()
    main = [f"applicant-{i}" for i in range(24)]
    platform.predict("loans", rows.head(24), subject_ids=main, key=key)
    branch = [f"branch-{i}" for i in range(5)] + [EVIL, FORMULA]
    platform.predict("loans-b", rows.iloc[30:37], subject_ids=branch, key=key_b)
    return Trail(s, version.ref, main, branch)


def classes(widget: widgets.Widget) -> set[str]:
    widget.get_state()
    found = set(getattr(widget, "_dom_classes", ()))
    for child in getattr(widget, "children", ()):
        found |= classes(child)
    return found


def reads(ws, action: str = "prediction.read") -> list:
    return ws.audit.log(action=action)


def test_the_audit_trail_finds_one_subjects_decision_among_the_others(trail):
    cora = trail.stack.cora
    board = AuditTrailDashboard(cora)
    assert {"nexml-audit", "nexml-audit-subject", "nexml-audit-from", "nexml-audit-to",
            "nexml-audit-route", "nexml-audit-search", "nexml-audit-results",
            "nexml-audit-open", "nexml-audit-detail", "nexml-audit-export",
            "nexml-audit-status"} <= classes(board)
    before = len(reads(cora))
    board.subject.value = "applicant-7"
    board.search_button.click()
    (expected,) = cora.find_decisions(subject_id="applicant-7")
    assert [d.request_id for d in board.found] == [expected.request_id]
    assert board.status.kind == "ok" and board.status.text.startswith("Found 1 decision;")
    assert board.results.value.count('class="nexml-audit-result"') == 1
    assert "applicant-7" in board.results.value and "applicant-8" not in board.results.value
    # The dashboard's look-up is an event naming the query and what it returned.
    events = reads(cora)
    assert len(events) == before + 2  # the dashboard's and find_decisions' own
    mine = events[before]
    assert (mine.actor, mine.object_ref) == ("cora", "predictions")
    assert mine.data["query"]["subject_id"] == "applicant-7"
    assert mine.data["returned"] == [expected.request_id]


def test_opening_a_decision_shows_inputs_output_reasons_and_chain_proof(trail):
    cora = trail.stack.cora
    declined = [d for d in cora.search_decisions(route="loans") if d.reasons]
    assert declined, "the model declines some of the first applicants"
    wanted = declined[0]
    board = AuditTrailDashboard(cora)
    board.subject.value = wanted.subject_id
    board.search_button.click()
    assert board.pick.value == wanted.request_id
    before = len(reads(cora))
    board.open_button.click()
    assert board.opened.request_id == wanted.request_id and board.opened.link_verified is True
    page = html.unescape(board.detail.value)
    for text in (wanted.request_id, wanted.subject_id, wanted.model_ref, wanted.artifact_sha256,
                 wanted.hash, wanted.prev_hash, "link verified", "loans", "main"):
        assert text in page, text
    for reason in wanted.reasons:
        assert reason["reason"] in page and reason["feature"] in page
    for name, value in wanted.inputs.items():
        assert f">{markup.cell(name)}</td><td" in board.detail.value, name
        assert f">{markup.cell(value)}</td>" in board.detail.value, name
    assert f"{wanted.confidence:.4g}" in page
    (opened,) = reads(cora)[before:]
    assert opened.data["query"] == {"request_id": wanted.request_id, "limit": 1}
    assert opened.data["returned"] == [wanted.request_id]


def test_route_and_date_filters(trail):
    cora = trail.stack.cora
    board = AuditTrailDashboard(cora)
    assert [v for _, v in board.route.options] == ["", "loans", "loans-b"]
    assert (board.route.index, board.deployment.index) == (0, 0)  # "any ..." shown at first
    board.route.value = "loans-b"
    board.search_button.click()
    assert sorted(d.subject_id for d in board.found) == sorted(trail.branch)
    assert all(d.route == "loans-b" for d in board.found)
    # User text is escaped where it reaches HTML.
    assert EVIL not in board.results.value and html.escape(EVIL) in board.results.value

    today = datetime.now(UTC).date()
    board.route.value = ""
    board.date_from.value, board.date_to.value = today - timedelta(days=1), today
    board.search_button.click()
    assert len(board.found) == len(trail.main) + len(trail.branch)
    board.date_from.value = board.date_to.value = today - timedelta(days=3)
    board.search_button.click()
    assert board.found == [] and board.status.text.startswith("No recorded decision matches")
    assert board.results.value.count('class="nexml-audit-result"') == 0

    before = len(reads(cora))
    board.date_from.value, board.date_to.value = today, today - timedelta(days=1)
    board.search_button.click()
    assert board.status.kind == "error" and "starts after it ends" in board.status.text
    assert len(reads(cora)) == before  # refused before anything was read


def test_export_decodes_to_the_selected_decisions(trail):
    cora = trail.stack.cora
    board = AuditTrailDashboard(cora)
    board.route.value = "loans"
    board.search_button.click()
    assert len(board.found) == len(trail.main)
    board.export_button.click()
    assert board.status.kind == "ok"
    link = re.search(
        r'<a class="nexml-audit-download-link" download="(decisions-[0-9-]+\.csv)" '
        r'href="data:text/csv;base64,([A-Za-z0-9+/=]+)"', board.download.value)
    assert link, board.download.value
    data = base64.b64decode(link.group(2))
    frame = pd.read_csv(io.BytesIO(data), dtype={"subject_id": str})
    assert list(frame["request_id"]) == [d.request_id for d in board.found]
    assert list(frame["subject_id"]) == [d.subject_id for d in board.found]
    assert list(frame["model_ref"].unique()) == [trail.ref]
    assert list(frame["hash"]) == [d.hash for d in board.found]
    assert frame["link_verified"].all() and set(frame["route"]) == {"loans"}
    for (_, row), d in zip(frame.iterrows(), board.found, strict=True):
        assert row["score"] == pytest.approx(d.score, rel=1e-12)
        assert bool(row["approved"]) == d.output["approved"]
        assert pd.isna(row["reasons"]) == (not d.reasons)
    (exported,) = reads(cora, "prediction.export")
    assert exported.actor == "cora" and exported.object_ref == "predictions:main"
    assert exported.data["returned"] == list(frame["request_id"])
    assert exported.data["csv_sha256"] == hashlib.sha256(data).hexdigest()
    assert trail.stack.admin.audit.verify().ok


def test_export_defuses_spreadsheet_formulas(trail):
    cora = trail.stack.cora
    [found] = cora.search_decisions(subject_id=FORMULA)
    assert found.subject_id == FORMULA  # recorded as sent
    data = cora.export_decisions([found.request_id])
    [row] = csv.DictReader(io.StringIO(data.decode("utf-8")))
    assert row["subject_id"] == "'" + FORMULA  # a text cell, never a formula
    assert float(row["score"]) == pytest.approx(found.score, rel=1e-12)  # numbers untouched


def test_export_refuses_nothing_and_unknown_ids(trail):
    cora = trail.stack.cora
    with pytest.raises(InvalidInput, match="no decisions were selected"):
        cora.export_decisions([])
    with pytest.raises(NotFound, match="1 request id"):
        cora.export_decisions([cora.search_decisions(limit=1)[0].request_id, "no-such-id"])
    board = AuditTrailDashboard(cora)
    board.export_button.click()
    assert (board.status.kind, board.status.text) == ("error", "Nothing to export: search first.")


def test_roles_that_may_not_read_decisions_get_no_controls(trail):
    for ws in (trail.stack.mark, trail.stack.dana):
        board = AuditTrailDashboard(ws)
        assert not board.can_search and board.search_button is None
        found = classes(board)
        assert "nexml-audit-status" in found and "nexml-audit-search" not in found
        assert "may not read recorded decisions" in board.status.text
        with pytest.raises(PermissionDenied):  # the Workspace refuses anyway
            ws.search_decisions(subject_id="applicant-7")
        with pytest.raises(PermissionDenied):
            ws.export_decisions(["anything"])
