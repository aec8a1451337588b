"""Monitors on the German credit deployment over simulated weeks (see conftest): the drift
alert in the week the shift starts and not before, deduplication, acknowledgement, the webhook,
the re-review trigger, retraining, performance against scikit-learn, every step in the chain."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from nexml_ext.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from nexml_ext.jobs.worker import Worker
from nexml_ext.monitoring.sinks import verify_signature
from tests.monitoring.conftest import (
    DAYS,
    LABELLED_WEEKS,
    SHIFT_WEEK,
    WEEKS,
    Scenario,
    shifted,
)

SHIFTED = {"credit_amount", "duration"}
HOOK_SECRET_ENV = "NEXML_TEST_MONITORING_HOOK_SECRET"
HOOK_SECRET = "hook-secret-" + "7" * 20


@dataclass
class Monitored:
    scenario: Scenario
    weekly: list[list[Any]] = field(default_factory=list)  # runs of each week's run_monitor
    open_after: list[list[Any]] = field(default_factory=list)  # open alerts after each week
    posts_after: list[int] = field(default_factory=list)  # webhook posts after each week

    @property
    def s(self):  # type: ignore[no-untyped-def]
        return self.scenario.stack


@pytest.fixture(scope="module")
def monitored(scenario: Scenario) -> Iterator[Monitored]:
    """The manager enrols the deployment (weekly, webhook, retrain on alert); then, at the end
    of each simulated week, the monitor runs on the simulated clock."""
    s = scenario.stack
    os.environ[HOOK_SECRET_ENV] = HOOK_SECRET  # the sink names the variable, never the secret
    s.mark.add_alert_sink("ops-hook", "webhook",
                          {"url": scenario.receiver.url, "secret_env": HOOK_SECRET_ENV})
    s.mark.enrol_monitor(
        "credit", window="weekly", sinks=["ops-hook"], segments=["purpose"],
        retrain_on_alert=True, source=str(scenario.source),
    )
    done = Monitored(scenario)
    for week in range(WEEKS):
        scenario.clock.now = scenario.week_start(week + 1) + timedelta(hours=6)
        done.weekly.append(s.admin.run_monitor("credit"))
        done.open_after.append(s.admin.alerts(deployment="credit"))
        done.posts_after.append(len(scenario.receiver.posts))
    yield done
    os.environ.pop(HOOK_SECRET_ENV, None)


def series(ws, metric: str, feature: str = "") -> dict[datetime, Any]:  # type: ignore[no-untyped-def]
    return {r.window_start: r for r in ws.monitor_results("credit", metric=metric)
            if r.feature == feature and r.window == "weekly"}


def test_drift_alert_in_the_week_the_shift_starts_and_not_before(monitored):
    sc, s = monitored.scenario, monitored.s
    for week, runs in enumerate(monitored.weekly):
        # each end-of-week run judged exactly the week that just ended
        assert [r.window_start for r in runs] == [sc.week_start(week)]
        assert runs[0].rows == len(sc.weeks[week]["rows"])
    for week in range(SHIFT_WEEK):
        assert monitored.weekly[week][0].breaches == 0
        assert monitored.open_after[week] == []
    raised = monitored.open_after[SHIFT_WEEK]
    drift = {a.feature for a in raised if a.metric == "psi"}
    assert drift == SHIFTED
    assert all(a.first_window_start == sc.week_start(SHIFT_WEEK) for a in raised)
    for name in ("credit_amount", "duration", "purpose", "housing", "checking_account"):
        points = series(s.cora, "psi", name)
        assert sorted(points)[:WEEKS] == [sc.week_start(w) for w in range(WEEKS)]
        breached = [w for w in range(WEEKS) if points[sc.week_start(w)].breached]
        assert breached == (list(range(SHIFT_WEEK, WEEKS)) if name in SHIFTED else [])
        assert all(p.threshold == 0.25 for p in points.values())  # the template's psi_alert
    # the alert names what breached, by how much and where
    amount = next(a for a in raised if a.feature == "credit_amount")
    assert amount.kind == "data_drift" and amount.value >= 0.25 and "credit_amount" in amount.message


def test_one_alert_per_metric_feature_and_window_counts_the_weeks(monitored):
    sc, s = monitored.scenario, monitored.s
    amount = [a for a in s.cora.alerts(status="all", deployment="credit")
              if a.metric == "psi" and a.feature == "credit_amount"]
    assert len(amount) == 1
    alert = amount[0]
    assert alert.count == WEEKS - SHIFT_WEEK
    assert alert.last_window_start == sc.week_start(WEEKS - 1)
    assert alert.first_seen_at == sc.week_start(SHIFT_WEEK + 1) + timedelta(hours=6)
    before = len(s.cora.monitor_results("credit"))
    # judging the same weeks again neither opens another alert nor counts them twice
    again = s.admin.run_monitor("credit", since=sc.week_start(SHIFT_WEEK),
                                until=sc.week_start(WEEKS))
    assert len(again) == WEEKS - SHIFT_WEEK
    after = s.cora.alert(alert.id)
    assert after.count == alert.count and after.status == alert.status
    assert len(s.cora.monitor_results("credit")) == before
    # nothing new was sent for the repeats
    assert len(sc.receiver.posts) == monitored.posts_after[-1]


def test_new_alerts_reach_the_webhook_and_each_delivery_is_recorded(monitored):
    sc, s = monitored.scenario, monitored.s
    raised = monitored.open_after[SHIFT_WEEK]
    assert monitored.posts_after[SHIFT_WEEK - 1] == 0
    assert monitored.posts_after[SHIFT_WEEK] == len(raised) == monitored.posts_after[-1]
    bodies = [json.loads(p["body"]) for p in sc.receiver.posts]
    assert all(p["path"] == "/hooks/nexml" for p in sc.receiver.posts)
    for post in sc.receiver.posts:  # signed with the secret from the environment
        assert verify_signature(post["body"], post["headers"].get("X-Nexml-Signature"),
                                HOOK_SECRET)
    assert {(b["metric"], b["feature"]) for b in bodies} == {(a.metric, a.feature) for a in raised}
    for body in bodies:
        assert body["deployment"] == "credit" and body["model"] == sc.ref
        assert body["window"] == "weekly"
        assert body["window_start"] == sc.week_start(SHIFT_WEEK).isoformat()
        assert body["value"] >= body["threshold"]
    added = s.cora.audit.log(action="alert_sink.add")
    assert HOOK_SECRET not in json.dumps([e.data for e in added])
    assert "/hooks/nexml" not in json.dumps([e.data for e in added])  # a URL path may be a token
    assert added[0].data["config"]["secret_env"] == HOOK_SECRET_ENV
    delivered = s.cora.audit.log(action="alert.deliver")
    assert sorted(e.object_ref for e in delivered) == sorted(f"alert:{a.id}" for a in raised)
    assert {e.data["status"] for e in delivered} == {"sent"}


def test_every_step_is_an_event_in_the_chain(monitored):
    sc, s = monitored.scenario, monitored.s
    log = s.cora.audit.log
    simulated = log(action="clock.simulate")
    assert simulated and simulated[0].actor == "ada" and simulated[0].data["simulated"] is True
    enrolled = log(action="monitor.enrol", object="monitor:credit")
    assert [(e.actor, e.data["sinks"], e.data["window_kind"]) for e in enrolled] == [
        ("mark", ["ops-hook"], "weekly")]
    runs = log(action="monitor.run", object="monitor:credit")
    starts = [e.data["start"] for e in runs]
    for week in range(WEEKS):
        assert sc.week_start(week).isoformat() in starts
    raised = {a.id for a in s.cora.alerts(status="all", deployment="credit")}
    assert raised
    assert {e.object_ref for e in log(action="alert.raise")} == {f"alert:{i}" for i in raised}
    # each drift alert is a re-review trigger on the version's compliance record
    reviews = log(action="compliance.re_review", object=sc.ref)
    assert {e.data["alert"] for e in reviews} == raised
    assert {e.data["trigger"] for e in reviews} == {"drift_alert"}
    history = s.cora.compliance(sc.ref).fields("change_history")["history"]
    assert sum(h["action"] == "compliance.re_review" for h in history) == len(raised)
    verdict = s.cora.audit.verify()
    assert verdict.ok, verdict


def test_an_alert_asks_once_for_retraining_and_nothing_is_deployed(monitored):
    sc, s = monitored.scenario, monitored.s
    raised = {a.id for a in monitored.open_after[SHIFT_WEEK]}
    asked = [e for e in s.cora.audit.log(action="monitor.retrain")
             if set(e.data["alerts"]) & raised]
    assert len(asked) == 1  # one job for the week's alerts, none for the repeats
    job_id = asked[0].data["job"]
    job = s.mark.job(job_id)
    assert job.kind == "retrain" and job.status in ("queued", "cancelled")  # never run here
    assert job.params["deployment"] == "credit"
    assert str(sc.source) in json.dumps(job.params["source"])
    assert asked[0].data["on_behalf_of"] == "mark"
    for alert in monitored.open_after[SHIFT_WEEK]:
        assert s.cora.alert(alert.id).data["retrain"]["job"] == job_id
    assert [d.model_ref for d in s.mark.deployments()] == [sc.ref]


def test_acknowledging_needs_the_role_and_a_note_and_is_an_event(monitored):
    s = monitored.s
    alert = next(a for a in monitored.open_after[SHIFT_WEEK] if a.feature == "duration")
    with pytest.raises(PermissionDenied):
        s.dana.acknowledge_alert(alert.id, note="seen")
    with pytest.raises(InvalidInput, match="note"):
        s.cora.acknowledge_alert(alert.id, note="  ")
    assert s.cora.alert(alert.id).status == "open"
    done = s.cora.acknowledge_alert(alert.id, note="Marketing campaign for larger loans; <b>ok</b>")
    assert done.status == "acknowledged" and done.acknowledged_by == "cora"
    event = s.cora.audit.log(action="alert.acknowledge", object=f"alert:{alert.id}")
    assert [e.data["note"] for e in event] == ["Marketing campaign for larger loans; <b>ok</b>"]
    assert event[0].actor == "cora"
    with pytest.raises(InvalidTransition, match="already acknowledged by cora"):
        s.mark.acknowledge_alert(alert.id, note="again")
    assert alert.id not in {a.id for a in s.cora.alerts()}
    assert alert.id in {a.id for a in s.cora.alerts(status="acknowledged")}
    with pytest.raises(NotFound):
        s.cora.acknowledge_alert(10_000, note="none")


def test_performance_from_outcomes_agrees_with_scikit_learn(monitored):
    sc, s = monitored.scenario, monitored.s
    for week in LABELLED_WEEKS:
        w = sc.weeks[week]
        y = w["picked"]["risk"].to_numpy()
        score = np.array([d.score for d in w["decisions"]])
        start = sc.week_start(week)
        got = {r.metric: r for r in s.cora.monitor_results("credit", kind="performance")
               if r.window_start == start and r.scope == "overall"}
        decided = (score >= 0.5).astype(int)
        expected = {
            "auc": roc_auc_score(y, score),
            "accuracy": accuracy_score(y, decided),
            "precision": precision_score(y, decided),
            "recall": recall_score(y, decided),
            "f1": f1_score(y, decided),
            "brier": brier_score_loss(y, score),
        }
        for metric, value in expected.items():
            assert got[metric].value == pytest.approx(value, rel=1e-9), metric
        assert got["outcomes"].value == len(y)
        assert got["auc"].threshold == 0.7 and not got["auc"].breached
        groups = {(r.feature, r.metric): r.value
                  for r in s.cora.monitor_results("credit", kind="performance")
                  if r.window_start == start and r.scope in ("group", "segment")}
        female = (w["picked"]["sex"] == "female").to_numpy()
        assert groups[("sex=female", "auc")] == pytest.approx(roc_auc_score(y[female],
                                                                             score[female]))
        car = (w["rows"]["purpose"] == "car").to_numpy()
        assert groups[("purpose=car", "accuracy")] == pytest.approx(
            accuracy_score(y[car], decided[car]))
    # weeks without outcomes have no performance numbers, only the count
    later = [r for r in s.cora.monitor_results("credit", kind="performance")
             if r.window_start == sc.week_start(WEEKS - 1)]
    assert [(r.metric, r.value) for r in later] == [("outcomes", 0.0)]


def test_health_and_prediction_drift_series(monitored):
    sc, s = monitored.scenario, monitored.s
    requests = series(s.cora, "requests")
    assert [requests[sc.week_start(w)].value for w in range(WEEKS)] == [
        len(sc.weeks[w]["rows"]) for w in range(WEEKS)]
    score_psi = series(s.cora, "score_psi", "score")
    assert all(score_psi[sc.week_start(w)].value < 0.05 for w in range(SHIFT_WEEK))
    assert all(score_psi[sc.week_start(w)].value > score_psi[sc.week_start(0)].value
               for w in range(SHIFT_WEEK, WEEKS))
    assert all(p.value > 0 for p in series(s.cora, "latency_p95_ms").values())


def test_enrolment_is_a_managers_act_and_refuses_bad_settings(monitored):
    s = monitored.s
    with pytest.raises(PermissionDenied):
        s.dana.enrol_monitor("credit")
    with pytest.raises(PermissionDenied):
        s.mark.set_clock(lambda: datetime(2020, 1, 1))
    with pytest.raises(Conflict, match="already enrolled"):
        s.mark.enrol_monitor("credit")
    with pytest.raises(InvalidInput, match="unknown threshold 'psi_alarm'"):
        s.mark.enrol_monitor("credit", thresholds={"psi_alarm": 0.2}, replace=True)
    with pytest.raises(InvalidInput, match="psi_warning"):
        s.mark.enrol_monitor("credit", thresholds={"psi_warning": 0.5}, replace=True)
    with pytest.raises(InvalidInput, match="source"):
        s.mark.enrol_monitor("credit", retrain_on_alert=True, replace=True)
    with pytest.raises(NotFound, match="no alert sink named nowhere"):
        s.mark.enrol_monitor("credit", sinks=["nowhere"], replace=True)
    with pytest.raises(InvalidInput, match="unknown window"):
        s.mark.enrol_monitor("credit", window="hourly", replace=True)
    with pytest.raises(NotFound):
        s.mark.enrol_monitor("nowhere")
    with pytest.raises(InvalidTransition, match="ops-hook"):
        s.mark.remove_alert_sink("ops-hook")
    mon = s.dana.monitor("credit")  # anyone may read it
    assert mon.sinks == ("ops-hook",) and mon.effective_thresholds["psi_alert"] == 0.25
    assert mon.effective_thresholds["auc_min"] == 0.7 and mon.source == str(
        monitored.scenario.source)


def test_the_monitor_job_runs_in_a_worker(monitored):
    sc, s = monitored.scenario, monitored.s
    for queued in s.mark.jobs(status="queued"):  # the retraining the alert asked for: not now
        s.mark.cancel_job(queued.id)
    job = s.mark.submit_job("monitor", {"deployment": "credit", "since": "2026-01-05",
                                        "until": sc.week_start(2).isoformat()})
    Worker(s.admin).run(until_idle=True)
    done = s.mark.job(job.id)
    assert done.status == "succeeded", done.error
    assert done.result["windows"] == [sc.week_start(0).isoformat(), sc.week_start(1).isoformat()]
    runs = s.cora.audit.log(action="monitor.run", object="monitor:credit")
    assert [e.data["job"] for e in runs[-2:]] == [job.id, job.id]
    with pytest.raises(NotFound):
        s.mark.submit_job("monitor", {"deployment": "nowhere"})
    with pytest.raises(PermissionDenied):
        s.dana.submit_job("monitor", {"deployment": "credit"})


def test_cli_lists_runs_reads_and_acknowledges(monitored):
    from click.testing import CliRunner

    from nexml_ext.cli import cli

    sc, s = monitored.scenario, monitored.s
    env = {"NEXML_HOME": str(s.settings.home), "NEXML_DATABASE_URL": s.settings.database_url,
           "NEXML_ARTIFACT_ROOT": s.settings.artifact_root}

    def nexml(who: str, *args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(cli, list(args), env={**env, "NEXML_TOKEN": s.tokens[who]})

    listed = nexml("cora", "monitor", "list")
    assert listed.exit_code == 0, listed.output
    assert "credit" in listed.output and "weekly" in listed.output and "ops-hook" in listed.output
    breached = nexml("cora", "monitor", "results", "credit", "--metric", "psi", "--breached",
                     "--json")
    lines = [json.loads(line) for line in breached.output.splitlines()]
    assert sorted((p["start"][:10], p["feature"]) for p in lines) == sorted(
        (f"{sc.week_start(w):%Y-%m-%d}", f) for w in range(SHIFT_WEEK, WEEKS) for f in SHIFTED)
    nothing = nexml("mark", "monitor", "run", "credit", "--until",
                    f"{sc.week_start(WEEKS):%Y-%m-%d}")
    assert nothing.exit_code == 0 and "no complete window to judge" in nothing.output
    score = next(a for a in s.cora.alerts(deployment="credit") if a.metric == "score_psi")
    refused = nexml("dana", "alerts", "ack", str(score.id), "--note", "seen")
    assert refused.exit_code == 4
    assert refused.output.strip().splitlines()[-1].startswith("error: permission denied")
    acked = nexml("mark", "alerts", "ack", str(score.id), "--note", "Scores follow the loans.")
    assert acked.exit_code == 0, acked.output
    assert s.cora.alert(score.id).note == "Scores follow the loans."
    shown = nexml("cora", "alerts", "--status", "all", "--deployment", "credit")
    assert shown.exit_code == 0 and f"{score.id} " in shown.output and "mark" in shown.output
    bad = nexml("mark", "monitor", "enrol", "credit", "--replace", "--threshold", "psi_alarm=1")
    assert bad.exit_code == 2 and "error: unknown threshold 'psi_alarm'" in bad.output
    sinks = nexml("mark", "alert-sink", "list")
    assert sinks.exit_code == 0 and "ops-hook" in sinks.output and "webhook" in sinks.output
    helped = nexml("mark", "alert-sink", "--help")
    assert "Secrets are never stored" in " ".join(helped.output.split())


def test_no_time_over_http_a_gateway_stamps_its_own_clock(monitored, german):
    import asyncio

    import httpx

    from nexml_ext.api import create_app
    from nexml_ext.workspace import Workspace

    sc, s = monitored.scenario, monitored.s
    _, key = s.mark.set_route("loans", {"default": "credit"})
    row = json.loads(german.drop(columns=["risk", "sex", "age"]).head(1).to_json(orient="records"))
    opened = Workspace.open(s.settings, s.tokens["ada"])  # what each `nexml server` process does
    app = create_app(opened)

    def post(body: dict[str, Any]) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/v1/routes/loans/predict", json=body,
                                         headers={"Authorization": f"Bearer {key}"})

        return asyncio.run(send())

    try:
        refused = post({"inputs": row, "explain": False, "at": "2026-01-05T10:00:00"})
        assert refused.status_code == 422 and "at" in refused.text
        answered = post({"inputs": row, "explain": False})
        assert answered.status_code == 200, answered.text
        request_id = answered.json()["predictions"][0]["request_id"]
    finally:
        opened.close()
    found = s.cora.find_decisions(request_id=request_id)
    # the simulation's clock stands in February; the gateway's record carries real time
    assert abs((found[0].at - datetime.utcnow()).total_seconds()) < 600
    assert sc.clock.now < found[0].at


def test_an_alert_resolves_when_the_metric_is_back_and_a_new_breach_opens_another(monitored):
    """Runs last: it adds two more simulated weeks, one back to normal, one shifted again."""
    sc, s = monitored.scenario, monitored.s
    normal = sc.weeks[0]["rows"]
    for week, rows in ((WEEKS, normal), (WEEKS + 1, shifted(normal))):
        for part, day in zip(np.array_split(np.arange(len(rows)), len(DAYS)), DAYS, strict=True):
            sc.clock.now = sc.week_start(week) + timedelta(days=day, hours=10)
            sc.platform.score_deployment("credit", rows.iloc[part], explain=False)
    posts = len(sc.receiver.posts)
    sc.clock.now = sc.week_start(WEEKS + 1) + timedelta(hours=6)
    back = s.admin.run_monitor("credit")
    assert [r.window_start for r in back] == [sc.week_start(WEEKS)] and back[0].breaches == 0
    old = {a.feature: a for a in s.cora.alerts(status="all", deployment="credit")
           if a.metric == "psi"}
    assert set(old) == SHIFTED
    assert {a.status for a in old.values()} == {"resolved"}  # acknowledged or not
    assert {a.resolved_at for a in old.values()} == {sc.clock.now}
    resolved = s.cora.audit.log(action="alert.resolve")
    assert {f"alert:{a.id}" for a in old.values()} <= {e.object_ref for e in resolved}
    sc.clock.now = sc.week_start(WEEKS + 2) + timedelta(hours=6)
    again = s.admin.run_monitor("credit")
    assert [r.window_start for r in again] == [sc.week_start(WEEKS + 1)]
    amount = [a for a in s.cora.alerts(status="all", deployment="credit")
              if a.metric == "psi" and a.feature == "credit_amount"]
    assert len(amount) == 2
    new = next(a for a in amount if a.status == "open")
    assert new.count == 1 and new.first_window_start == sc.week_start(WEEKS + 1)
    assert len(sc.receiver.posts) > posts
    assert json.loads(sc.receiver.posts[-1]["body"])["window_start"] == (
        sc.week_start(WEEKS + 1).isoformat())
