"""The monitoring dashboard: per deployment, traffic, drift and performance over time, alerts.

``MonitoringDashboard(ws)`` reads through the Workspace as ``ws``'s principal. For the chosen
deployment it shows:

- what it serves (``ws.deployments()``);
- recorded decisions per UTC day and how many have an outcome attached
  (``ws.traffic_by_day``; needs ``prediction.read``), as a chart and a table;
- the monitors' stored time series (``ws.monitors()``, ``ws.monitor_results(deployment)``):
  one chart per metric over the windows, the threshold dashed, breached windows in red —
  drift metrics and, where outcomes exist, performance metrics;
- a drift check of the recorded inputs against the training profile, on request
  (``ws.find_decisions`` then ``ws.drift``; both are recorded: the read as an audited event,
  the check as an analysis job), for roles that may read decisions and analyse models;
- alerts (``ws.alerts``), with acknowledgement and a note (``ws.acknowledge_alert``) for roles
  that may acknowledge.

When the monitoring API is not in this Workspace, or the deployment has no monitor, the page
says "no monitors enrolled" plainly instead of showing empty charts.

Stable CSS classes (``add_class``) for browser tests:

- ``nexml-monitoring``: the dashboard itself
- ``nexml-monitoring-deployment``: the deployment chooser (Dropdown)
- ``nexml-monitoring-facts``: what the deployment serves
- ``nexml-monitoring-traffic``: decisions per day
- ``nexml-monitoring-monitors``: the monitors' time series (``nexml-monitoring-none`` when
  there are none)
- ``nexml-monitoring-drift-check``: the button checking drift of recorded inputs, and
  ``nexml-monitoring-drift`` the result
- ``nexml-monitoring-alerts``: the alerts; ``nexml-monitoring-ack`` the acknowledge button,
  ``nexml-monitoring-ack-note`` its note
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...errors import NexmlError, PermissionDenied
from . import charts, markup
from .drift import DriftView
from .platform_summary import alerts_table, may, section, when

#: Most recorded decisions the on-request drift check reads.
DRIFT_ROWS = 5000
#: Most lines one chart draws (features ranked by their highest value).
MAX_LINES = 8
NO_MONITORS = "no monitors enrolled"


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: results may be dataclasses or dicts."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def series_figure(points: list[Any], title: str) -> Figure:
    """One metric over its windows, a line per feature ("overall" when it has none; the
    ``MAX_LINES`` highest-peaking features when there are many), the threshold dashed and
    breached windows marked red."""
    fig = Figure(figsize=(7, 2.8), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lines: dict[str, list[Any]] = defaultdict(list)
    for p in points:
        lines[field(p, "feature") or "overall"].append(p)
    peak = {k: max((field(p, "value") or 0.0) for p in v) for k, v in lines.items()}
    kept = sorted(lines, key=lambda k: -peak[k])[:MAX_LINES]
    for name in sorted(kept):
        ps = lines[name]
        ax.plot([_x(p) for p in ps], [_y(p) for p in ps], marker="o", markersize=3,
                label=charts.plain(name))
    breached = [p for name in kept for p in lines[name] if field(p, "breached")]
    if breached:
        ax.scatter([_x(p) for p in breached], [_y(p) for p in breached], s=60, zorder=3,
                   facecolors="none", edgecolors=charts.STATUS_COLOURS["alert"], linewidths=2,
                   label="breached")
    limits = sorted({(_x(p), field(p, "threshold")) for p in points
                     if field(p, "threshold") is not None}, key=lambda xy: xy[0])
    if limits:
        ax.plot([xy[0] for xy in limits], [xy[1] for xy in limits], linestyle="--",
                color=charts.STATUS_COLOURS["alert"], linewidth=1, label="threshold")
    ax.set_title(charts.plain(title))
    ax.legend(loc="best", fontsize=7)
    fig.autofmt_xdate()
    return fig


def _x(point: Any) -> Any:
    return field(point, "window_start") or field(point, "window_end")


def _y(point: Any) -> float:
    value = field(point, "value")
    return float("nan") if value is None else float(value)


def traffic_figure(days: list[Any]) -> Figure:
    """Decisions per day (bars) with the number that have an outcome."""
    fig = Figure(figsize=(7, 2.6), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [d.day for d in days]
    ax.bar(xs, [d.decisions for d in days], color=charts.BAR_COLOUR, label="decisions")
    ax.bar(xs, [d.with_outcome for d in days], color=charts.HIGHLIGHT_COLOUR, width=0.5,
           label="with outcome")
    ax.set_title("Recorded decisions per day (UTC)")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return fig


class MonitoringDashboard(widgets.VBox):
    """The monitoring dashboard for ``ws``'s principal.

    Attributes: ``deployment`` (Dropdown), ``facts``, ``traffic`` (HTML), ``traffic_chart``,
    ``traffic_days`` (DayTraffic list shown), ``monitors`` (HTML), ``monitor_charts`` (Box of
    one image per chart), ``results`` (the monitor's results), ``series`` (chart title → its
    points), ``drift_button`` /
    ``drift_view`` (None without the reads it needs), ``alerts`` (HTML), ``alert_rows``,
    ``ack_select``/``ack_note``/``ack_button`` (None when the role may not acknowledge, or
    there is no alerts API), ``message``.
    """

    def __init__(self, ws: Any, *, days: int = 90) -> None:
        self.ws = ws
        self.days = days
        self.message = markup.Message()
        self.traffic_days: list[Any] = []
        self.results: list[Any] = []
        self.series: dict[str, list[Any]] = {}
        self.alert_rows: list[Any] = []
        self.drift_report: Any = None
        who = ws.principal
        header = widgets.HTML(
            markup.heading("Monitoring", 3)
            + f"<p>Signed in as <b>{html.escape(who.name)}</b> ({html.escape(who.role.value)});"
            f" the last {int(days)} days (UTC).</p>"
        )
        self.deployment = widgets.Dropdown(description="Deployment", options=[])
        self.deployment.add_class("nexml-monitoring-deployment")
        self.facts = widgets.HTML()
        self.facts.add_class("nexml-monitoring-facts")
        boxes: list[widgets.Widget] = [header, self.deployment, self.facts, self.message]

        self.traffic = widgets.HTML()
        self.traffic_chart = widgets.Box()
        if may(ws, "prediction.read"):
            boxes.append(section("Traffic", "nexml-monitoring-traffic",
                                 self.traffic_chart, self.traffic))

        self.monitors = widgets.HTML()
        self.monitor_charts = widgets.VBox()
        boxes.append(section("Monitors: drift and performance over time",
                             "nexml-monitoring-monitors", self.monitors, self.monitor_charts))

        self.drift_button = self.drift_view = None
        if may(ws, "prediction.read") and may(ws, "model.analyse"):
            self.drift_button = widgets.Button(description="Check drift of recorded inputs",
                                               icon="line-chart")
            self.drift_button.add_class("nexml-monitoring-drift-check")
            self.drift_button.on_click(lambda _: self.check_drift())
            self.drift_view = widgets.VBox()
            self.drift_view.add_class("nexml-monitoring-drift")
            self.drift_message = markup.Message()
            boxes.append(section(
                "Drift of recorded inputs, now", "nexml-monitoring-drift-now",
                widgets.HTML(f"<p>Reads up to {DRIFT_ROWS} decisions of the period (an audited "
                             "read) and compares their inputs with the training profile of "
                             "the version now served (recorded as an analysis).</p>"),
                self.drift_button, self.drift_message, self.drift_view,
            ))

        self.alerts = widgets.HTML()
        self.ack_select = self.ack_note = self.ack_button = None
        self.ack_message = markup.Message()
        alert_children: list[widgets.Widget] = [self.alerts]
        if may(ws, "alert.acknowledge"):
            self.ack_select = widgets.Dropdown(description="Alert", options=[])
            self.ack_note = widgets.Text(placeholder="Note: what you checked or did (required)",
                                         layout=widgets.Layout(width="50%"))
            self.ack_note.add_class("nexml-monitoring-ack-note")
            self.ack_button = widgets.Button(description="Acknowledge", button_style="warning")
            self.ack_button.add_class("nexml-monitoring-ack")
            self.ack_button.on_click(lambda _: self.acknowledge())
            alert_children += [widgets.HBox([self.ack_select, self.ack_note, self.ack_button]),
                               self.ack_message]
        alerts_box = section("Alerts", "nexml-monitoring-alerts-box", *alert_children)
        self.alerts.add_class("nexml-monitoring-alerts")
        boxes.append(alerts_box)

        super().__init__(boxes)
        self.add_class("nexml-monitoring")
        self.deployment.observe(lambda _: self.show(), names="value")
        self.refresh()

    # --- reading -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the deployments and show the chosen one."""
        done, deployments = self.message.attempt(self.ws.deployments)
        if not done:
            return
        self._deployments = {d.name: d for d in deployments}
        names = [d.name for d in deployments]
        current = self.deployment.value
        self.deployment.options = names
        if names:
            chosen = current if current in names else next(
                (d.name for d in deployments if d.status == "active"), names[0]
            )
            if chosen == self.deployment.value:
                self.show()
            else:
                self.deployment.value = chosen  # show() runs through the observer
        else:
            self.show()

    @property
    def since(self) -> date:
        return (datetime.now(UTC) - timedelta(days=self.days)).date()

    def show(self) -> None:
        """Show the chosen deployment: facts, traffic, monitors, alerts."""
        name = self.deployment.value
        if not name:
            self.facts.value = "<i>no deployment yet</i>"
            self.traffic.value = self.monitors.value = ""
            self.traffic_chart.children = self.monitor_charts.children = ()
            self._alerts(None)
            return
        d = self._deployments[name]
        self.facts.value = markup.definitions([
            ("serves", d.model_ref), ("status", d.status), ("size", d.size),
            ("deployed by", d.created_by), ("last change", when(d.updated_at)),
        ])
        if self.drift_view is not None:
            self.drift_view.children = ()
            self.drift_message.show("")
        for part in (lambda: self._traffic(name), lambda: self._monitors(name),
                     lambda: self._alerts(name)):
            try:
                part()
            except NexmlError as exc:
                self.message.refused(exc)

    def _traffic(self, name: str) -> None:
        if not may(self.ws, "prediction.read"):
            return
        self.traffic_days = self.ws.traffic_by_day(name, since=self.since)
        self.traffic.value = markup.table(
            ["day", "decisions", "with outcome", "shadow", "mean latency ms"],
            [{"day": d.day.isoformat(), "decisions": d.decisions, "with outcome": d.with_outcome,
              "shadow": d.shadow, "mean latency ms": d.latency_mean_ms}
             for d in self.traffic_days],
        )
        self.traffic_chart.children = (
            [charts.image(traffic_figure(self.traffic_days))] if self.traffic_days else []
        )

    def _monitors(self, name: str) -> None:
        self.results = []
        try:
            enrolled = [m for m in self.ws.monitors() if field(m, "deployment") == name]
        except PermissionDenied as exc:
            self._no_monitors(str(exc))
            return
        if not enrolled:
            self._no_monitors(f"deployment {name} has no monitor (a manager enrols it)")
            return
        self.results = list(self.ws.monitor_results(name))
        self.monitors.value = markup.table(
            ["serving", "window", "checks", "enabled", "last window end", "open alerts",
             "thresholds"],
            [{"serving": field(m, "model_ref"), "window": field(m, "window"),
              "checks": list(field(m, "checks") or ()), "enabled": field(m, "enabled"),
              "last window end": _time(field(m, "last_window_end")),
              "open alerts": field(m, "open_alerts"),
              "thresholds": ", ".join(f"{k} {v:g}" for k, v in sorted(
                  (field(m, "effective_thresholds") or {}).items()))}
             for m in enrolled],
        )
        self.series = self._series(self.results)
        images: list[widgets.Widget] = [
            charts.image(series_figure(points, title))
            for title, points in self.series.items()
        ]
        if not images:
            images.append(widgets.HTML("<i>the monitor has evaluated no window yet</i>"))
        self.monitor_charts.children = images

    @staticmethod
    def _series(results: list[Any]) -> dict[str, list[Any]]:
        """Results grouped into one chart each: (check, metric, window kind), drift and
        performance first; segment and group breakdowns are left to the tables of reports."""
        order = {"data_drift": 0, "prediction_drift": 1, "performance": 2, "health": 3}
        groups: dict[tuple[int, str, str, str], list[Any]] = defaultdict(list)
        for r in results:
            if field(r, "scope") not in (None, "overall", "feature") or field(r, "value") is None:
                continue
            kind = str(field(r, "kind") or "")
            key = (order.get(kind, 9), kind, str(field(r, "metric")), str(field(r, "window")))
            groups[key].append(r)
        return {
            f"{kind.replace('_', ' ')}: {metric} ({window})": sorted(points, key=_x)
            for (_, kind, metric, window), points in sorted(groups.items())
        }

    def _no_monitors(self, why: str) -> None:
        self.series = {}
        self.monitors.value = (
            f"<p class='nexml-monitoring-none'><b>{NO_MONITORS}</b>: {html.escape(why)}.</p>"
        )
        self.monitor_charts.children = ()

    def _alerts(self, name: str | None) -> None:
        if name is None:
            self.alert_rows = []
        else:
            try:
                self.alert_rows = _deployment_alerts(self.ws.alerts, name)
            except PermissionDenied as exc:
                self.alerts.value = f"<i>{html.escape(str(exc))}</i>"
                return
        self.alerts.value = alerts_table(self.alert_rows)
        if self.ack_select is not None:
            self.ack_select.options = [
                (f"#{field(a, 'id')} {field(a, 'kind')}", field(a, "id"))
                for a in self.alert_rows if field(a, "status") == "open"
            ]

    # --- acting --------------------------------------------------------------------------------

    def check_drift(self) -> Any:
        """Drift of the period's recorded inputs (the served version's only) against its
        training profile; shown as the drift view."""
        name = self.deployment.value
        if not name or self.drift_button is None:
            return None
        served = self._deployments[name].model_ref

        def run() -> Any:
            import pandas as pd

            found = self.ws.find_decisions(deployment=name, since=self.since, limit=DRIFT_ROWS)
            rows = [d.inputs for d in found if not d.shadow and d.model_ref == served]
            if not rows:
                raise _Nothing(f"no recorded decisions of {served} on {name} in the period")
            return self.ws.drift(served, pd.DataFrame(rows))

        try:
            done, report = self.drift_message.attempt(run)
        except _Nothing as exc:
            self.drift_message.show(str(exc))
            return None
        if done:
            self.drift_report = report
            self.drift_view.children = [DriftView(report)]
            self.drift_message.ok(f"drift of {served}'s recorded inputs checked")
        return report if done else None

    def acknowledge(self) -> Any:
        """Acknowledge the chosen alert with the note written."""
        if self.ack_select is None or self.ack_select.value is None:
            return None
        alert_id, note = self.ack_select.value, self.ack_note.value
        done, result = self.ack_message.attempt(
            lambda: self.ws.acknowledge_alert(alert_id, note=note)
        )
        if done:
            self.ack_message.ok(f"alert #{alert_id} acknowledged")
            self.ack_note.value = ""
            self._alerts(self.deployment.value)
        return result if done else None


class _Nothing(Exception):
    """Nothing to check (not a refusal)."""


def _deployment_alerts(read: Any, name: str) -> list[Any]:
    """Every alert of deployment ``name``, newest first (open, acknowledged and resolved)."""
    return list(read(status="all", deployment=name))


def _time(value: Any) -> Any:
    return when(value) if isinstance(value, datetime) else value


def monitoring_dashboard(ws: Any, **kwargs: Any) -> MonitoringDashboard:
    """The monitoring dashboard as ``ws``'s principal may see it."""
    return MonitoringDashboard(ws, **kwargs)
