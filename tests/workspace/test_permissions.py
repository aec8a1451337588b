"""The whole permission matrix, driven from ``roles.MATRIX`` itself, through the Workspace.

For every action there is one invoker below that performs it for real; for every role the test
asserts what the matrix says: allowed calls succeed, denied calls raise PermissionDenied, and
``own`` cells succeed on the principal's own object and are refused on someone else's.
"""

from __future__ import annotations

import pytest

from nexml_ext.errors import PermissionDenied
from nexml_ext.governance.compliance import TierPolicy
from nexml_ext.governance.roles import ACTIONS, MATRIX, Grant, Role


def _inv_user_manage(w, ws, author):
    ws.add_user(w.unique("user"), "data_scientist")


def _inv_token_own(w, ws, author):
    ws.create_token(label="matrix test")


def _inv_dataset_register(w, ws, author):
    ws.register_dataset(w.stack.german.head(50 + int(w.unique("n").split("-")[1])), w.unique("ds"))


def _inv_dataset_view(w, ws, author):
    assert ws.dataset(w.holdout).row_count == 250
    assert len(ws.datasets()) >= 2


def _inv_model_train(w, ws, author):
    run = ws.train(w.holdout, "risk", time_limit=2, progress=False)  # who may, not how well
    assert run.registry["dataset"] == w.holdout


def _inv_model_analyse(w, ws, author):
    version = w.staged(author)
    report = ws.drift(version.ref, w.holdout)
    assert report.to_dict()


def _inv_model_register(w, ws, author):
    assert ws.register_model(w.fresh_artifact(), w.unique("m")).status == "staging"


def _inv_model_view(w, ws, author):
    version = w.staged(author)
    assert ws.version(version.ref).ref == version.ref
    assert ws.versions(version.name)[0].ref == version.ref
    assert version.name in {m.name for m in ws.models()}
    ws.validations(version.ref)
    ws.approvals(version.ref)
    ws.deployments()


def _inv_compliance_view(w, ws, author):
    version = w.staged(author)
    assert 0 <= ws.compliance(version.ref).score().total <= 100
    ws.tier_policy()


def _inv_compliance_edit(w, ws, author):
    version = w.staged(author)
    status = ws.compliance(version.ref).set("domain", {"target_population": "Retail applicants"})
    assert status.filled >= 1


def _inv_compliance_configure(w, ws, author):
    ws.set_tier_policy(TierPolicy.default().to_dict())


def _inv_compliance_set_tier(w, ws, author):
    version = w.staged(author)
    assert ws.compliance(version.ref).set_tier(2, reason="Low exposure pilot portfolio")[0] == 2


def _inv_validation_request(w, ws, author):
    version = w.staged(author)
    assert ws.validate(version.ref, dataset=w.holdout).status in {"passed", "failed"}


def _inv_validation_record(w, ws, author):
    version = w.staged(author)
    ws.record_validation(
        version.ref, artifact_sha256=version.artifact_sha256, metrics={"roc_auc": 0.75}
    )


def _inv_model_approve(w, ws, author):
    version = w.ready(author)
    ws.approve(version.ref, findings="Reviewed validation and documentation in full.")


def _inv_model_reject(w, ws, author):
    version = w.staged(author)
    ws.reject(version.ref, findings="Documentation missing; resubmit with the fairness section.")


def _inv_model_deploy(w, ws, author):
    version = w.approved(author)
    ws.deploy(version.ref, name=w.unique("dep"))


def _inv_model_rollback(w, ws, author):
    model = w.unique("m")
    v1 = w.approved(author, model)
    v2 = w.approved(author, model)
    name = w.unique("dep")
    w.stack.mia.deploy(v2.ref, name=name)
    assert ws.rollback(name, to=v1.ref).model_ref == v1.ref


def _inv_model_retire(w, ws, author):
    version = w.approved(author)
    assert ws.retire(version.ref).status == "retired"


def _inv_deployment_export(w, ws, author):
    name = _deployed(w, author)
    out = w.stack.settings.home.parent / w.unique("bundle")
    assert (ws.export_deployment(name, target="docker", out=out).path / "Dockerfile").is_file()


def _inv_route_manage(w, ws, author):
    version = w.approved(author)
    deployment = w.unique("dep")
    w.stack.mark.deploy(version.ref, name=deployment)
    route, key = ws.set_route(w.unique("route"), {"default": deployment})
    assert route.default == deployment and key
    assert ws.rotate_route_key(route.name) != key


def _deployed(w, author):
    name = w.unique("dep")
    w.stack.mark.deploy(w.approved(author).ref, name=name)
    return name


def _applicants(w, n=2):
    return w.stack.german.drop(columns=["risk"]).head(n).to_dict(orient="records")


def _inv_model_score(w, ws, author):
    name = _deployed(w, author)
    decisions = ws.score_deployment(name, _applicants(w), explain=False)
    assert [d.seq for d in decisions] == [1, 2]


def _inv_prediction_read(w, ws, author):
    assert isinstance(ws.find_decisions(subject_id="47392"), list)


def _inv_prediction_outcome(w, ws, author):
    name = _deployed(w, author)
    platform = w.stack.admin._as_platform()
    made = platform.score_deployment(name, _applicants(w, 1), explain=False)
    assert ws.record_outcomes([{"request_id": made[0].request_id, "outcome": 1}]) == 1


def _inv_audit_view(w, ws, author):
    assert ws.audit.log(limit=3)


def _inv_audit_verify(w, ws, author):
    assert ws.audit.verify().ok


def _inv_job_test(w, ws, author):
    assert ws.submit_job("selftest", {"seconds": 0}).status == "queued"


def _inv_job_cancel(w, ws, author):
    job = author.submit_job("selftest", {"seconds": 0})
    assert ws.cancel_job(job.id).status == "cancelled"


def _inv_job_run(w, ws, author):
    from nexml_ext.jobs import Worker

    assert ws.reap_jobs() == []
    job = w.stack.dana.submit_job("selftest", {"seconds": 0})
    assert Worker(ws).run_once().id == job.id


def _report_on(w, author):
    """One real compliance report about a version ``author`` wrote (made once per test)."""
    made = w.__dict__.setdefault("reports_made", {})
    if author.principal.name not in made:
        version = w.staged(author)
        made[author.principal.name] = w.stack.cora.make_report("compliance", subject=version.ref)
    return made[author.principal.name]


def _inv_report_generate(w, ws, author):
    version = w.staged(author)
    assert ws.submit_job("report-compliance", {"ref": version.ref}).status == "queued"


def _inv_report_view(w, ws, author):
    made = _report_on(w, author)
    assert ws.report(made.id).html_sha256 == made.html_sha256
    assert made.id in {r.id for r in ws.reports()}


def _inv_schedule_view(w, ws, author):
    name = w.unique("sched")
    w.stack.mark.add_schedule(name, "0 6 * * *", "selftest", {"seconds": 0})
    assert name in {s.name for s in ws.schedules()}
    assert ws.schedule(name).kind == "selftest" and ws.schedule_fires(name) == []


def _inv_schedule_manage(w, ws, author):
    name = w.unique("sched")
    assert ws.add_schedule(name, "0 6 * * *", "selftest", {"seconds": 0}).enabled
    assert not ws.disable_schedule(name).enabled
    assert ws.enable_schedule(name).enabled
    assert ws.remove_schedule(name).name == name


def _inv_schedule_run(w, ws, author):
    from datetime import timedelta

    from nexml_ext.jobs.schedules import Scheduler, utc_now

    name = w.unique("sched")
    w.stack.admin.add_schedule(name, "0 6 * * *", "selftest", {"seconds": 0},
                               now=utc_now() - timedelta(days=2))
    fired = Scheduler(ws).run_once()
    assert name in {f.schedule for f in fired}


def _monitored(w):
    """A deployment enrolled for monitoring by a manager (made once per test)."""
    if "monitored" not in w.__dict__:
        name = _deployed(w, w.stack.dana)
        w.stack.mark.enrol_monitor(name, window="daily", thresholds={"traffic_min": 1000})
        w.monitored = name
    return w.monitored


def _open_alert(w):
    """An open alert's id: a deployment recorded a few decisions in January 2026 (simulated
    time) and its monitor found too little traffic, per day, week and month (three alerts)."""
    from datetime import datetime

    if "alerts_made" not in w.__dict__:
        name, admin = _monitored(w), w.stack.admin
        admin.set_clock(lambda: datetime(2026, 1, 5, 10))
        admin._as_platform().score_deployment(name, _applicants(w), explain=False)
        admin.set_clock(None)
        for window in ("daily", "weekly", "monthly"):
            admin.run_monitor(name, window=window, until="2026-02-01")
        w.alerts_made = True
    found = w.stack.admin.alerts(deployment=_monitored(w))
    return found[0].id if found else 10**6


def _inv_monitor_enrol(w, ws, author):
    name = _monitored(w)
    assert ws.enrol_monitor(name, window="weekly", replace=True).window == "weekly"
    assert not ws.disable_monitor(name).enabled
    assert ws.enrol_monitor(name, window="daily", thresholds={"traffic_min": 1000}).enabled


def _inv_monitor_view(w, ws, author):
    name = _monitored(w)
    assert name in {m.deployment for m in ws.monitors()}
    assert ws.monitor(name).deployment == name
    assert isinstance(ws.monitor_results(name), list)


def _inv_monitor_run(w, ws, author):
    assert ws.run_monitor(_monitored(w), until="2026-01-01") == []


def _inv_alert_view(w, ws, author):
    assert isinstance(ws.alerts(status="all"), list)


def _inv_alert_acknowledge(w, ws, author):
    alert = _open_alert(w)
    assert ws.acknowledge_alert(alert, note="traffic checked").status == "acknowledged"


def _inv_alert_configure(w, ws, author):
    name = w.unique("sink")
    assert ws.add_alert_sink(name, "log", {}).kind == "log"
    assert name in {s.name for s in ws.alert_sinks()}
    assert ws.remove_alert_sink(name).name == name


def _inv_clock_simulate(w, ws, author):
    from datetime import datetime

    ws.set_clock(lambda: datetime(2026, 1, 5))
    assert ws._now() == datetime(2026, 1, 5)
    ws.set_clock(None)


def _inv_model_retrain(w, ws, author):
    version = w.approved(author)
    name = w.unique("dep")
    w.stack.mark.deploy(version.ref, name=name)
    csv = w.stack.settings.home.parent / f"{w.unique('labelled')}.csv"
    w.stack.german.to_csv(csv, index=False)
    assert ws.retrain(name, source=str(csv)).status == "queued"


def _inv_model_shadow(w, ws, author):
    version = w.staged(author)
    assert ws.shadow(version.ref, name=w.unique("shadow")).model_ref == version.ref


INVOKERS = {
    name.removeprefix("_inv_").replace("_", ".", 1): fn
    for name, fn in dict(globals()).items()
    if name.startswith("_inv_")
}


def test_every_action_has_an_invoker():
    assert set(INVOKERS) == set(MATRIX) == {a.name for a in ACTIONS}


def _principals(stack):
    return {
        Role.DATA_SCIENTIST: stack.dana,
        Role.MANAGER: stack.mark,
        Role.COMPLIANCE_OFFICER: stack.cora,
        Role.SUPERADMIN: stack.admin,
        Role.PLATFORM: stack.admin._as_platform(),
    }


@pytest.mark.parametrize("action", sorted(MATRIX))
def test_matrix_cell(world, german, action):
    world.stack.german = german
    invoke = INVOKERS[action]
    stack = world.stack
    for role, ws in _principals(stack).items():
        cell = MATRIX[action].get(role)
        other = stack.dave  # a data scientist who is nobody else in this test
        if cell is Grant.ALLOW:
            invoke(world, ws, other)
        elif cell is Grant.OWN:
            invoke(world, ws, ws)
            with pytest.raises(PermissionDenied, match=f"{ws.principal.name} may not"):
                invoke(world, ws, other)
        else:
            with pytest.raises(PermissionDenied, match=f"{role.value} {ws.principal.name} may not"):
                invoke(world, ws, other)
            if role in (Role.DATA_SCIENTIST, Role.MANAGER):
                # Denied even on one's own objects: data scientists never approve or deploy.
                with pytest.raises(PermissionDenied):
                    invoke(world, ws, ws)
