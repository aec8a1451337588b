"""The widgets against a real Workspace: simulated edits and clicks change what it holds, and its
refusals show in the widget."""

from __future__ import annotations

import time

import ipywidgets as widgets
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.jupyter.widgets import (
    compliance_form,
    drift_view,
    explanation_view,
    fairness_view,
    jobs_view,
    leaderboard_widget,
    model_card,
)
from nexml_ext.ml.automl import train
from nexml_ext.store import tables as t
from tests.workspace import conftest as workspace_fixtures

world = workspace_fixtures.world  # staged / document / ready / approved builders

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PNG = b"\x89PNG\r\n\x1a\n"
DOMAIN = {
    "business_purpose": "Ranks applicants for unsecured loans by repayment probability.",
    "intended_use": "Underwriters review every application scored below the cut-off.",
    "target_population": "Adult retail applicants, German market.",
    "out_of_scope_uses": "Mortgages, small-business lending, marketing.",
    "decision_automation": "automated_with_human_review_of_declines",
}


def rendered(widget: widgets.Widget) -> str:
    """Every piece of HTML a widget tree renders (checking on the way that each widget's state
    serialises for the front end)."""
    widget.get_state()
    out = [widget.value] if isinstance(widget, widgets.HTML) else []
    for child in getattr(widget, "children", ()):
        out.append(rendered(child))
    return "\n".join(out)


def is_png(image: widgets.Image) -> bool:
    return bytes(image.value).startswith(PNG)


def fill(form, section: str, values: dict) -> None:
    for name, value in values.items():
        form.sections[section].fields[name].value = value


@pytest.fixture(scope="module")
def run(german):
    return train(
        german.sample(300, random_state=0),
        "risk",
        backend="sklearn",
        time_limit=10,
        protected=["sex", "age"],
        progress=False,
    )


# --- compliance form -------------------------------------------------------------------------


def test_compliance_form_marks_mandatory_sections_and_shows_auto_fields_read_only(world):
    dana = world.stack.dana
    version = world.staged(dana, template=None)
    form = compliance_form(dana, version.ref)
    assert len(form.sections) == 12 and set(form.save_buttons) == set(form.sections)
    assert form.meter.value == dana.compliance(version.ref).score().total
    information = form.sections["information"]
    assert "artifact_sha256" not in information.fields
    assert version.artifact_sha256 in information.auto["artifact_sha256"].value
    assert set(information.fields) == {"description", "owner_business_unit", "model_owner"}
    assert all(s.mandatory for s in form.sections.values())  # tier 1 until materiality says

    # Marketing use with a small exposure is tier 3: saving the risk section changes the tier,
    # and with it which sections the form marks mandatory.
    fill(form, "risk", {
        "exposure_amount": "20000", "decision_purpose": "marketing",
        "assumptions": "Response rates of past campaigns carry over.",
        "limitations": "No outcome data for customers never contacted.",
    })
    form.save_buttons["risk"].click()
    state = dana.compliance(version.ref).state()
    assert state.tier == 3 and "risk tier <b>3</b>" in form.summary.value
    assert "consent" not in state.mandatory
    assert {sid for sid, s in form.sections.items() if s.mandatory} == set(state.mandatory)
    for title, sid in zip(form.accordion.titles, form.sections, strict=True):
        assert title.startswith("★") == (sid in state.mandatory)


def test_saving_a_section_writes_the_record_and_raises_the_meter(world):
    dana = world.stack.dana
    ref = world.staged(dana).ref
    form = compliance_form(dana, ref)
    before = form.meter.value
    assert form.sections["domain"].mandatory and not form.sections["domain"].complete

    fill(form, "domain", {**DOMAIN, "jurisdictions": "DE\nAT\n"})
    form.save_buttons["domain"].click()

    stored = dana.compliance(ref).fields("domain")
    assert {k: stored[k] for k in DOMAIN} == DOMAIN
    assert stored["jurisdictions"] == ["DE", "AT"]
    assert form.message.kind == "ok", form.message.text
    assert form.sections["domain"].complete
    assert form.meter.value == dana.compliance(ref).score().total > before
    assert "complete" in form.accordion.titles[list(form.sections).index("domain")]

    # Clearing a field goes through the Workspace too.
    form.sections["domain"].fields["jurisdictions"].value = ""
    form.save_buttons["domain"].click()
    assert "jurisdictions" not in dana.compliance(ref).fields("domain")


def test_an_invalid_value_shows_the_workspaces_refusal_and_saves_nothing(world):
    dana = world.stack.dana
    ref = world.staged(dana).ref
    form = compliance_form(dana, ref)
    fields_before, score_before = dana.compliance(ref).fields(), form.meter.value

    fill(form, "risk", {"exposure_amount": "lots", "decision_purpose": "pricing"})
    form.save_buttons["risk"].click()

    with pytest.raises(InvalidInput) as refused:
        dana.compliance(ref).set("risk", {"exposure_amount": "lots"})
    assert form.message.kind == "error"
    assert form.message.text == str(refused.value)
    assert "exposure_amount" in form.message.text
    assert dana.compliance(ref).fields() == fields_before
    assert form.meter.value == score_before
    assert form.sections["risk"].fields["exposure_amount"].value == "lots"  # kept to correct

    form.sections["risk"].fields["exposure_amount"].value = "2500000"
    form.save_buttons["risk"].click()
    assert dana.compliance(ref).fields("risk")["exposure_amount"] == 2500000


def test_user_text_is_escaped_in_the_forms_html(world):
    dana = world.stack.dana
    ref = world.staged(dana).ref
    form = compliance_form(dana, ref)

    fill(form, "domain", {**DOMAIN, "target_population": EVIL})
    form.save_buttons["domain"].click()
    assert dana.compliance(ref).fields("domain")["target_population"] == EVIL
    assert ESCAPED in form.sections["domain"].stored.value

    form.sections["risk"].fields["exposure_amount"].value = EVIL  # refused, and quoted back
    form.save_buttons["risk"].click()
    assert EVIL in form.message.text and ESCAPED in form.message.value

    reopened = compliance_form(dana, ref)
    html = rendered(form) + rendered(reopened)
    assert "<script" not in html.lower()
    assert ESCAPED in rendered(reopened)


def test_the_form_shows_permission_and_lifecycle_refusals(world):
    stack = world.stack
    ref = world.staged(stack.dana).ref
    form = compliance_form(stack.mark, ref)  # a manager may read, not write, dana's record
    fill(form, "domain", DOMAIN)
    form.save_buttons["domain"].click()
    assert form.message.text.startswith("permission denied")
    assert stack.dana.compliance(ref).fields("domain") == {}

    approved = world.approved(stack.dana).ref
    frozen = compliance_form(stack.dana, approved)
    frozen.sections["monitoring"].fields["retraining_policy"].value = "Yearly refit."
    frozen.save_buttons["monitoring"].click()
    assert frozen.message.kind == "error" and "frozen" in frozen.message.text
    assert "retraining_policy" not in stack.dana.compliance(approved).fields("monitoring")


# --- model card ------------------------------------------------------------------------------


def test_a_data_scientist_clicking_approve_is_refused_in_the_card(world):
    dana = world.stack.dana
    ref = world.staged(dana).ref
    card = model_card(dana, ref)
    card.findings.value = "Looks fine to me."
    card.approve_button.click()

    assert card.message.kind == "error"
    assert card.message.text.startswith("permission denied")
    assert dana.version(ref).status == "staging"
    assert "staging" in card.status.value
    assert dana.approvals(ref) == []


def test_a_manager_approves_a_ready_version_through_the_card(world):
    stack = world.stack
    version = world.ready(stack.dana)
    card = model_card(stack.mark, version.ref)
    assert "staging" in card.status.value
    assert "passed" in card.validations.value and "this artifact" in card.validations.value
    assert "roc_auc" in card.metrics.value
    assert world.train in card.lineage.value

    card.approve_button.click()  # no findings: the Workspace refuses
    assert card.message.kind == "error" and "findings" in card.message.text
    assert stack.mark.version(version.ref).status == "staging"

    card.findings.value = f"Validated on the holdout. {EVIL}"
    card.approve_button.click()
    assert card.message.kind == "ok", card.message.text
    assert stack.mark.version(version.ref).status == "approved"
    assert "approved" in card.status.value
    assert "mark" in card.approvals.value and ESCAPED in card.approvals.value
    assert "<script" not in rendered(card).lower()

    card.findings.value = "Changed my mind."
    card.reject_button.click()  # already decided
    assert card.message.kind == "error"
    assert stack.mark.version(version.ref).status == "approved"


# --- leaderboard -----------------------------------------------------------------------------


def test_the_leaderboard_sorts_by_the_chosen_column(run):
    board = leaderboard_widget(run)
    frame = run.leaderboard
    assert board.order == list(frame.sort_values("score_val", ascending=False)["model"])
    assert is_png(board.chart) and rendered(board)
    assert 'class="champion"' in board.table.value and run.champion_name in board.summary.value

    board.sort_by.value = "fit_time_s"
    board.ascending.value = True
    expected = list(frame.sort_values("fit_time_s", kind="stable")["model"])
    assert board.order == expected
    shown = [board.table.value.index(f">{m}<") for m in expected]
    assert shown == sorted(shown)

    board.ascending.value = False
    assert board.order == list(
        frame.sort_values("fit_time_s", ascending=False, kind="stable")["model"]
    )


# --- analyses --------------------------------------------------------------------------------


def test_the_explanation_view_shows_a_rows_waterfall_and_reasons(world):
    stack = world.stack
    ref = world.ready(stack.dana).ref
    holdout = stack.dana.load_dataset(world.holdout)
    rows = pd.concat([  # an applicant the model approves, and two it is all but sure to decline
        holdout[holdout.checking_account == "not_known"].head(1),
        holdout[holdout.checking_account == "little"].nlargest(2, "duration"),
    ])
    explanation = stack.mark.explain(ref, rows)
    declined = int((~explanation.approved).nonzero()[0][0])
    importance = (
        explanation.values.abs().mean().rename("mean_abs_shap").rename_axis("feature").reset_index()
    )

    view = explanation_view(explanation, row=declined, importance=importance)
    assert is_png(view.chart) and is_png(view.importance)
    assert "declined" in view.summary.value
    for reason in explanation.reasons[declined]:
        assert reason.feature in view.reasons.value
    first = view.chart.value

    approved = int(explanation.approved.nonzero()[0][0])
    view.row.value = approved
    assert "approved" in view.summary.value and view.chart.value != first
    assert "no adverse-action reasons" in view.reasons.value

    with pytest.raises(InvalidInput):
        explanation_view(explanation, row=len(rows))


def test_the_fairness_view_lists_the_flagged_groups(world, german):
    stack = world.stack
    ref = world.ready(stack.dana).ref
    # Men with no known checking account against women with little in it: the model approves
    # the second group far less often, so women get an adverse-impact flag.
    skewed = pd.concat(
        [
            german[(german.sex == "male") & (german.checking_account == "not_known")],
            german[(german.sex == "female") & (german.checking_account == "little")],
        ]
    )
    data = stack.dana.register_dataset(skewed, "credit-skewed").ref
    report = stack.mia.fairness(ref, data)
    assert report.flagged.get("sex") == ["female"]

    view = fairness_view(report)
    assert view.flagged_groups == report.flagged
    assert "female" in view.flagged.value
    assert view.tables["sex"].value.count('class="flagged"') == 1
    assert "male (control)" in view.tables["sex"].value
    assert fairness_view(report.to_dict()).flagged_groups == report.flagged
    assert "<script" not in rendered(view)


def test_the_drift_view_lists_the_flagged_features(world):
    stack = world.stack
    ref = world.ready(stack.dana).ref
    shifted = stack.dana.load_dataset(world.holdout)
    shifted["credit_amount"] = shifted["credit_amount"] * 4
    shifted["duration"] = shifted["duration"] + 36
    report = stack.mia.drift(ref, shifted)
    flagged = {c.column for c in report.columns.values() if c.status in ("warn", "alert")}
    assert {"credit_amount", "duration"} <= set(report.alerts)

    view = drift_view(report)
    assert set(view.flagged_features) == flagged
    assert view.flagged_features[0] in report.alerts  # worst first
    for name in flagged:
        assert name in view.flagged.value
    assert view.table.value.count('class="flagged"') == len(flagged)
    assert is_png(view.chart)
    assert drift_view(report.to_dict()).flagged_features == view.flagged_features
    assert "PSI" in rendered(view)


# --- jobs ------------------------------------------------------------------------------------


def test_the_jobs_view_lists_jobs_and_refresh_picks_up_new_ones(world):
    stack = world.stack
    ref = world.staged(stack.dana).ref
    rows = stack.dana.load_dataset(world.holdout)
    stack.mia.drift(ref, rows)
    view = jobs_view(stack.mia)
    assert [j.kind for j in view.jobs] == ["drift"]
    assert "drift" in view.table.value and ref in view.table.value

    stack.dana.drift(ref, rows.head(100))
    assert len(view.jobs) == 1
    view.refresh_button.click()
    assert [j.created_by for j in view.jobs] == ["dana", "mia"]
    assert f">{view.jobs[0].id}<" in view.table.value
    assert jobs_view(stack.dana).jobs == view.jobs[:1]  # data scientists see their own

    # A running job gets a live progress bar, which goes when the job ends.
    with stack.mia._db.write() as s:
        job = t.Job(
            kind="training",
            status="running",
            progress=0.4,
            message="fitting",
            params={"dataset": world.train},
            created_by="mia",
            started_at=t.utcnow(),
        )
        s.add(job)
        s.flush()
        job_id = job.id
    view.refresh_button.click()
    assert view.progress[job_id].value == pytest.approx(0.4)
    assert len(view.running.children) == 1
    with stack.mia._db.write() as s:
        row = s.get(t.Job, job_id)
        row.status, row.progress, row.finished_at = "succeeded", 1.0, t.utcnow()
    view.refresh_button.click()
    assert view.progress == {} and view.running.children == ()
    assert "training" in rendered(view)
    view.close()


def test_the_jobs_view_refreshes_itself_until_closed(world):
    stack = world.stack
    ref = world.staged(stack.dana).ref
    view = jobs_view(stack.dana, refresh_seconds=0.05)
    assert view.jobs == []
    stack.dana.drift(ref, stack.dana.load_dataset(world.holdout).head(100))
    deadline = time.monotonic() + 10
    while not view.jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [j.kind for j in view.jobs] == ["drift"]
    view.close()
    assert not view._thread.is_alive()

    with pytest.raises(InvalidInput):
        jobs_view(stack.dana, refresh_seconds=0)


def test_the_explanation_view_takes_any_local_explanation_and_odd_feature_names():
    import numpy as np

    from nexml_ext.ml.explain import LocalExplanation

    names = [f"f{i}" for i in range(13)] + ["$income$", EVIL]
    values = pd.DataFrame([np.linspace(-1, 1, len(names))], columns=names)
    local = LocalExplanation(values, np.array([0.2]), np.array([0.2]), "permutation", "log_odds")
    view = explanation_view(local, importance=pd.DataFrame({"feature": names, "gain": 1.0}))
    assert is_png(view.chart) and is_png(view.importance)
    assert "permutation" in view.summary.value and "<script" not in rendered(view).lower()
