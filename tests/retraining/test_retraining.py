"""Retraining end to end (the module fixture in conftest.py): a challenger in staging with a
comparison report computed on one holdout, a recommendation, every step an event, nothing
deployed; the challenger shadowing live traffic; approval by someone other than its author."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nexml_ext.errors import AuthenticationFailed, InvalidInput, PermissionDenied
from nexml_ext.reports.comparison import recommend
from nexml_ext.workspace.core import PLATFORM_USER
from tests.jobs.conftest import nexml
from tests.retraining.conftest import FINDINGS


def _after(r, since_seq):
    return [e for e in r.stack.admin.audit.log() if e.seq > since_seq]


def test_the_challenger_lands_in_staging_authored_by_who_asked_and_nothing_is_deployed(retrained):
    r, s = retrained, retrained.stack
    challenger, champion = s.mark.version(r.challenger), s.mark.version(r.champion)
    assert (challenger.name, challenger.version) == ("credit-risk", 2)
    assert challenger.status == "staging" and challenger.author == "mark"
    retraining = challenger.lineage["retraining"]
    assert retraining["deployment"] == "credit" and retraining["champion"] == r.champion
    assert retraining["requested_by"] == "mark" and retraining["job"] == r.job.id
    assert retraining["labelled"] == "credit-labelled:1"
    assert retraining["holdout"] == "credit-labelled-holdout:1"
    assert retraining["source"]["uri"] == str(r.source)
    # Trained with the champion's settings, on the new training part only.
    old, new = champion.lineage["training"], challenger.lineage["training"]
    for key in ("backend", "problem_type", "target", "metric", "seed", "features", "protected"):
        assert new[key] == old[key], key
    assert new["training_rows"] == s.mark.dataset("credit-labelled-train:1").row_count == 750
    assert [d["ref"] for d in challenger.lineage["datasets"]] == ["credit-labelled-train:1"]
    # The champion's compliance sections came along for the reviewer; the record is complete.
    assert s.mark.compliance(r.challenger).score().missing_mandatory == ()
    # Nothing deployed: the champion still answers on its deployment, and no deploy happened.
    assert champion.status == "deployed"
    now = {d.name: d.model_ref for d in s.mark.deployments() if d.name != "credit-challenger"}
    assert now == {d.name: d.model_ref for d in r.deployments_before} == {"credit": r.champion}
    actions = [e.action for e in _after(r, r.seq_before)]
    assert not {"model.deploy", "model.rollback", "model.approve"} & set(actions)


def test_every_step_is_an_event_in_the_chain(retrained):
    r, s = retrained, retrained.stack
    events = _after(r, r.seq_before)
    steps = [(e.action, e.object_ref, e.actor) for e in events]
    job = f"job:{r.job.id}"
    report = f"report:{r.job.result['report']}"
    expected = [
        ("job.submit", job, "mark"),
        ("dataset.register", "dataset:credit-labelled:1", PLATFORM_USER),
        ("dataset.register", "dataset:credit-labelled-train:1", PLATFORM_USER),
        ("dataset.register", "dataset:credit-labelled-holdout:1", PLATFORM_USER),
        ("model.train", "dataset:credit-labelled-train:1", PLATFORM_USER),
        ("model.register", r.challenger, PLATFORM_USER),
        ("report.start", report, PLATFORM_USER),
        ("validation.record", r.challenger, PLATFORM_USER),
        ("report.make", report, PLATFORM_USER),
        ("model.recommend", r.challenger, PLATFORM_USER),
        ("job.finish", job, PLATFORM_USER),
        ("model.shadow", "deployment:credit-challenger", "mark"),
        ("route.set", "route:loans", "mark"),
    ]
    assert [step for step in steps if step in expected] == expected
    by_action = {e.action: e for e in events}
    registered = by_action["model.register"].data
    assert registered["author"] == "mark" and registered["retrained_from"] == r.champion
    assert registered["compliance_from"] == r.champion
    recommended = by_action["model.recommend"].data
    assert recommended["recommendation"] == r.job.result["recommendation"]
    assert recommended["report"] == r.job.result["report"]
    assert recommended["deltas"] == r.job.result["deltas"]
    verdict = s.cora.audit.verify()
    assert verdict.ok, verdict


def test_the_comparison_is_computed_on_one_holdout(retrained):
    """The report's numbers, recomputed with scikit-learn from the holdout and both models'
    own predictions."""
    r, s = retrained, retrained.stack
    report = s.mark.report(r.job.result["report"])
    assert (report.kind, report.status, report.subject) == ("comparison", "done", r.challenger)
    assert report.params == {"model_ref": r.challenger, "dataset_ref": "credit-labelled-holdout:1"}
    holdout = s.mark.load_dataset("credit-labelled-holdout:1")
    truth = holdout["risk"].to_numpy()
    aucs = {}
    for ref in (r.champion, r.challenger):
        model = s.admin._load_model(ref)  # the hash-verified artifact
        scores = np.asarray(model.score(holdout), dtype=float)
        aucs[ref] = roc_auc_score(truth == model.classes[1], scores)
    deltas = report.summary["recommendation"]["deltas"]["roc_auc"]
    assert deltas["champion"] == pytest.approx(aucs[r.champion], abs=1e-12)
    assert deltas["challenger"] == pytest.approx(aucs[r.challenger], abs=1e-12)
    assert deltas["delta"] == pytest.approx(aucs[r.challenger] - aucs[r.champion], abs=1e-12)
    # The challenger's platform validation is the report's, on that holdout.
    (validation,) = [v for v in s.mark.validations(r.challenger) if v.report_id == report.id]
    assert validation.dataset == "credit-labelled-holdout:1" and validation.run_by == PLATFORM_USER
    assert validation.requested_by == "mark"
    assert validation.metrics["roc_auc"] == pytest.approx(aucs[r.challenger], abs=1e-12)
    assert report.summary["validation_id"] == validation.id == r.job.result["validation"]
    # The recommendation is the rule applied to the two validations: the flipped outcomes are
    # learnt by the challenger, which is materially better and passes every check.
    comparison = validation.details["comparison"]
    again = recommend(
        champion_ref=r.champion, challenger_ref=r.challenger, problem_type="binary",
        champion_metrics=comparison["champion_metrics"], challenger_metrics=validation.metrics,
        champion_status=comparison["champion_status"], challenger_status=validation.status,
    )
    assert again.to_dict() == report.summary["recommendation"]
    assert again.decision == "promote" and aucs[r.challenger] - aucs[r.champion] > 0.005
    assert validation.status == "passed"
    # ... and visible on the version.
    shown = s.dana.version(r.challenger).lineage["retraining"]["recommendation"]
    assert shown["decision"] == "promote" and shown["deltas"]["roc_auc"] == deltas
    page = s.mark.report_html(report.id).decode()
    assert "Recommendation: PROMOTE" in page and r.champion in page and r.challenger in page
    assert f"{aucs[r.challenger]:.4f}" in page and f"{aucs[r.champion]:.4f}" in page
    assert s.cora.report_is_authentic(page.encode())


def test_the_shadow_is_recorded_and_the_champion_answers(retrained):
    r, s = retrained, retrained.stack
    answers = r.decisions
    assert len(answers) == len(r.rows)
    assert {(d.deployment, d.model_ref, d.shadow) for d in answers} == {
        ("credit", r.champion, False)}
    shadow = [d for d in r.recorded if d.shadow]
    assert len(shadow) == len(r.rows)
    assert {(d.deployment, d.model_ref, d.rule) for d in shadow} == {
        ("credit-challenger", r.challenger, "shadow")}
    assert not {d.request_id for d in shadow} & {d.request_id for d in answers}
    # Each side's recorded score is that model's own score of the row.
    for ref, decisions in ((r.champion, answers), (r.challenger, shadow)):
        model = s.admin._load_model(ref)
        expected = np.asarray(model.score(r.rows), dtype=float)
        order = sorted(decisions, key=lambda d: int(d.subject_id.split("-")[1]))
        assert [d.score for d in order] == pytest.approx(list(expected), abs=1e-12)
    assert s.cora.audit.verify().ok


def test_the_shadow_never_answers(retrained):
    r, s = retrained, retrained.stack
    before = s.mark.route("loans")
    for spec, where in (
        ({"rules": [], "default": "credit-challenger"}, "default"),
        ({"rules": [], "default": "credit",
          "canary": {"to": "credit-challenger", "share": 0.5}}, "canary"),
        ({"rules": [{"name": "big", "to": "credit-challenger",
                     "when": {"field": "credit_amount", "op": ">", "value": 5000}}],
          "default": "credit"}, "rule 'big'"),
    ):
        with pytest.raises(InvalidInput, match=f"{where} 'credit-challenger' is a shadow-only"):
            s.mark.set_route("loans", spec)
    assert s.mark.route("loans") == before
    # No route key reaches it directly (the Open Inference Protocol path).
    with pytest.raises(AuthenticationFailed, match="credit-challenger"):
        s.admin._as_platform().check_deployment_key("credit-challenger", r.route_key)
    s.admin._as_platform().check_deployment_key("credit", r.route_key)


def test_the_cli_queues_a_retraining_and_refuses_in_one_line(retrained):
    r, s = retrained, retrained.stack
    calls = {  # run side by side: each is a fresh `nexml` process
        "mark": ("retrain", "credit", "--source", str(r.source), "--time-limit", "5"),
        "cora": ("retrain", "credit", "--source", str(r.source)),
        "mia": ("retrain", "credit", "--source", "postgresql://u:secret@db/x", "--table", "t"),
    }
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {who: pool.submit(nexml, s.settings, *args, token=s.tokens[who])
                   for who, args in calls.items()}
        ran = {who: future.result() for who, future in futures.items()}
    job_id = int(ran["mark"].ok().out.split()[1])
    queued = s.mark.job(job_id)
    assert (queued.kind, queued.status, queued.created_by) == ("retrain", "queued", "mark")
    assert queued.params == {"deployment": "credit", "source": {"uri": str(r.source)},
                             "time_limit": 5.0}
    s.mark.cancel_job(job_id)
    ran["cora"].refused(4, "may not retrain")
    line = ran["mia"].refused(2, "holds a credential")
    assert "secret" not in line


def test_only_someone_other_than_its_author_approves_the_challenger(retrained):
    # Runs last in this module: it decides the challenger.
    r, s = retrained, retrained.stack
    with pytest.raises(PermissionDenied, match="mark is its author"):
        s.mark.approve(r.challenger, findings=FINDINGS)
    with pytest.raises(PermissionDenied, match="may not approve"):
        s.dana.approve(r.challenger, findings=FINDINGS)
    approval = s.mia.approve(r.challenger, findings=FINDINGS)
    assert approval.validation_id == r.job.result["validation"]
    assert approval.report_id == r.job.result["report"]
    assert s.mia.version(r.challenger).status == "approved"
    # Approved is not deployed: still only a shadow, until a manager deploys it.
    with pytest.raises(InvalidInput, match="shadow-only"):
        s.mark.set_route("loans", {"rules": [], "default": "credit-challenger"})
    assert {d.name: d.model_ref for d in s.mark.deployments()}["credit"] == r.champion
