"""The monitoring dashboard against a real store: traffic per day agrees with the recorded
decisions, the drift check reads the recorded inputs (an audited read) and agrees with the drift
module on the same rows, and roles see what they may."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from nexml_ext.jupyter.widgets.drift import DriftView
from nexml_ext.jupyter.widgets.monitoring_dashboard import NO_MONITORS, MonitoringDashboard
from tests.dashboards.test_platform_summary_widget import (
    SUBJECTS,
    WITH_OUTCOME,
    classes,
    dash,
    pngs,
    rendered,
)

_ = dash  # the module-scoped store: one deployed model with decisions, one rejected, one staged


def test_traffic_per_day_agrees_with_the_recorded_decisions(dash):
    s = dash.stack
    board = MonitoringDashboard(s.cora)
    assert board.deployment.value == "main"
    assert {"nexml-monitoring-deployment", "nexml-monitoring-alerts"} <= classes(board)
    assert dash.deployed in board.facts.value
    assert NO_MONITORS in rendered(board)  # every widget's state serialises; none enrolled yet
    found = [d for d in s.cora.find_decisions(deployment="main", limit=10_000) if not d.shadow]
    per_day = Counter(d.at.date() for d in found)
    outcomes = Counter(d.at.date() for d in found if d.outcome is not None)
    assert {d.day: d.decisions for d in board.traffic_days} == dict(per_day)
    assert {d.day: d.with_outcome for d in board.traffic_days if d.with_outcome} == dict(outcomes)
    assert sum(d.decisions for d in board.traffic_days) == SUBJECTS
    assert sum(d.with_outcome for d in board.traffic_days) == WITH_OUTCOME
    assert pngs(board.traffic_chart) and pngs(board.traffic_chart)[0].startswith(b"\x89PNG")


def test_drift_check_of_recorded_inputs(dash, german):
    s = dash.stack
    board = MonitoringDashboard(s.cora)
    reads = len(s.cora.audit.log(action="prediction.read"))
    analyses = len(s.cora.audit.log(action="model.drift"))
    report = board.check_drift()
    assert board.drift_message.kind == "ok", board.drift_message.text
    data = report.to_dict()
    assert data["rows"] == SUBJECTS
    (view,) = board.drift_view.children
    assert isinstance(view, DriftView)
    # Both the read of the records and the analysis are in the audit trail.
    assert len(s.cora.audit.log(action="prediction.read")) == reads + 1
    assert len(s.cora.audit.log(action="model.drift")) == analyses + 1
    # The rows that were sent, checked directly: the same statistics column by column.
    sent = german.drop(columns=["risk"]).head(SUBJECTS)
    direct = s.cora.drift(dash.deployed, sent).to_dict()
    assert set(data["columns"]) == set(direct["columns"]) and "credit_amount" in data["columns"]
    for name, column in data["columns"].items():
        assert column["psi"] == direct["columns"][name]["psi"], name
        assert column["status"] == direct["columns"][name]["status"], name


def test_manager_sees_no_traffic_and_no_drift_check(dash):
    s = dash.stack
    board = MonitoringDashboard(s.mark)
    assert board.deployment.options == ("main",)
    present = classes(board)
    assert "nexml-monitoring-traffic" not in present
    assert "nexml-monitoring-drift-check" not in present and board.drift_button is None
    assert board.traffic_days == []


def test_no_monitors_is_said_plainly(dash):
    s = dash.stack
    board = MonitoringDashboard(s.admin)
    if hasattr(s.admin, "monitors"):
        enrolled = [m for m in s.admin.monitors() if getattr(m, "deployment", None) == "main"]
        if enrolled:
            return
    assert NO_MONITORS in board.monitors.value
    assert "nexml-monitoring-none" in board.monitors.value
    assert board.monitor_charts.children == ()


def test_zz_monitor_series_and_alerts(dash, german):
    """Last in the module: it adds simulated traffic to ``main``. Four simulated days, the last
    two with credit amounts and durations stretched; a daily drift monitor; the dashboard plots
    the stored series and lists the alerts, and acknowledging one goes through the Workspace."""
    s = dash.stack
    start = datetime(2026, 1, 5)
    now = [start]
    s.admin.set_clock(lambda: now[0])
    platform = s.admin._as_platform()
    try:
        for day in range(4):
            now[0] = start + timedelta(days=day, hours=10)
            rows = german.drop(columns=["risk"]).sample(80, random_state=day)
            if day >= 2:
                rows = rows.assign(credit_amount=rows.credit_amount * 4,
                                   duration=rows.duration * 3)
            platform.score_deployment("main", rows, explain=False)
    finally:
        s.admin.set_clock(None)
    s.mark.enrol_monitor("main", window="daily", checks=["data_drift"],
                         thresholds={"min_rows": 50})
    runs = s.mark.run_monitor("main", since=start, until=start + timedelta(days=4))
    assert len(runs) == 4

    board = MonitoringDashboard(s.mark)
    results = s.mark.monitor_results("main")
    assert board.results == results
    assert NO_MONITORS not in board.monitors.value and "data_drift" in board.monitors.value
    plotted = [r for points in board.series.values() for r in points]
    assert plotted and all(r in results for r in plotted)
    assert {r.metric for r in plotted} == {
        r.metric for r in results if r.scope in ("overall", "feature") and r.value is not None
    }
    charts_ = pngs(board.monitor_charts)
    assert len(charts_) == len(board.series) and all(c.startswith(b"\x89PNG") for c in charts_)
    # The stretched days breach; the alerts raised are listed, and one is acknowledged.
    alerts = s.mark.alerts(status="all", deployment="main")
    assert alerts and all(a.first_window_start >= start + timedelta(days=2) for a in alerts)
    for a in alerts:
        assert f">{a.id}<" in board.alerts.value
    first = board.ack_select.options[0][1]
    board.ack_select.value = first
    board.ack_note.value = "Checked the upstream feed: amounts now in cents. <b>fixed</b>"
    board.ack_button.click()
    assert board.ack_message.kind == "ok", board.ack_message.text
    assert s.mark.alert(first).status == "acknowledged"
    assert "amounts now in cents. &lt;b&gt;fixed&lt;/b&gt;" in board.alerts.value
    (event,) = s.cora.audit.log(action="alert.acknowledge")
    assert event.actor == "mark" and event.object_ref == f"alert:{first}"
    # Acknowledging it again is refused by the Workspace, and the refusal is shown.
    board.ack_select.options = [("again", first)]
    board.ack_note.value = "again"
    board.ack_button.click()
    assert board.ack_message.kind == "error" and "already acknowledged" in board.ack_message.text
    # A data scientist sees the series and alerts but cannot acknowledge.
    ds = MonitoringDashboard(s.dana)
    assert ds.ack_button is None and "nexml-monitoring-ack" not in classes(ds)
    assert ds.series.keys() == board.series.keys()
