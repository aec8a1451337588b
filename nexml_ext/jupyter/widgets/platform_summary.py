"""The CTO's platform summary: one page on what exists, what serves, what waits and who acts.

``PlatformSummaryDashboard(ws)`` reads everything through the Workspace as ``ws``'s principal.
A section whose read the principal's role is not granted (``roles.grant``) is left out rather
than shown empty; the Workspace would refuse the read anyway. Sections: inventory by status,
deployments and their health, compliance scores, pending approvals, alerts, recent events, the
audit chains (verified on open when they are small, else by the Verify button), user activity,
and users by role (superadmins).

Deployment health counts recorded decisions only. A request the gateway refused (401, 422, 5xx)
records nothing, so its errors are not stored: the gateway counts them in ``/metrics``
(Prometheus, summed over its processes), which start again from zero when it restarts. The page
says so where it shows health.

Stable CSS classes (``add_class``) for browser tests:

- ``nexml-summary``: the dashboard itself
- ``nexml-summary-inventory``: versions by status (table and bar chart)
- ``nexml-summary-deployments``: deployments and their health
- ``nexml-summary-compliance``: compliance scores per version
- ``nexml-summary-approvals``: versions waiting for a decision
- ``nexml-summary-alerts``: open alerts (when the monitoring API is present)
- ``nexml-summary-events``: the newest events
- ``nexml-summary-chain``: audit-chain status (records, head, verification result)
- ``nexml-summary-verify``: the button that verifies every chain
- ``nexml-summary-activity``: events per user
- ``nexml-summary-users``: users by role
- ``nexml-summary-refresh``: the button that re-reads everything
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as widgets

from ...errors import NexmlError, PermissionDenied
from ...governance import roles
from . import charts, markup

#: Verify the chains when the page opens if they hold at most this many records in all.
VERIFY_ON_OPEN_LIMIT = 20_000
DEFAULT_DAYS = 30
ERRORS_NOTE = (
    "Counted from the recorded decisions. Refused or failed requests (401, 422, 5xx) record "
    "nothing, so error counts are not stored: the gateway reports them in /metrics "
    "(reset when it restarts)."
)


def may(ws: Any, action: str) -> bool:
    """Whether ``ws``'s principal's role is granted ``action`` at all (own or any); an action
    the matrix does not know (yet) is not granted."""
    try:
        return roles.grant(ws.principal.role, action) is not None
    except KeyError:
        return False


def section(title: str, css: str, *children: widgets.Widget) -> widgets.VBox:
    """A titled block carrying a stable CSS class."""
    box = widgets.VBox([widgets.HTML(markup.heading(title)), *children])
    box.add_class(css)
    return box


def when(value: datetime | None) -> str | None:
    return None if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
         colours: Sequence[str] | None = None) -> widgets.Image | widgets.HTML:
    """A horizontal bar chart as a PNG image (nothing to draw: an empty HTML)."""
    if not labels:
        return widgets.HTML()
    return charts.image(charts.barh(labels, values, title=title, xlabel=xlabel, colours=colours))


STATUS_ORDER = ("staging", "approved", "deployed", "rejected", "retired")
STATUS_BAR_COLOURS = {
    "staging": "#e0a100", "approved": "#4c9a2a", "deployed": "#0b5cad",
    "rejected": "#c0392b", "retired": "#888888",
}


class PlatformSummaryDashboard(widgets.VBox):
    """The platform summary for ``ws``'s principal.

    Attributes (each present only when the role may read it, else None): ``inventory``,
    ``deployments``, ``compliance``, ``approvals``, ``alerts``, ``events``, ``chain``,
    ``verify_button``, ``activity``, ``users`` (HTML widgets or buttons), and the data they show:
    ``counts`` (status → versions), ``health`` (list of DeploymentHealth), ``scores``
    (ref → score), ``pending`` (refs in staging), ``verification`` (the last
    AuditVerification or None), ``activity_rows``. ``sections`` maps a section's CSS class to its
    box. ``message`` shows refusals. ``refresh()`` re-reads everything.
    """

    def __init__(self, ws: Any, *, days: int = DEFAULT_DAYS,
                 verify_on_open: bool | None = None) -> None:
        self.ws = ws
        self.days = days
        self.message = markup.Message()
        self.counts: dict[str, int] = {}
        self.health: list[Any] = []
        self.scores: dict[str, int] = {}
        self.pending: list[str] = []
        self.activity_rows: list[Any] = []
        self.alert_rows: list[Any] = []
        self.verification: Any = None
        self.sections: dict[str, widgets.VBox] = {}

        self.inventory = self.inventory_chart = None
        self.deployments = self.compliance = self.compliance_chart = None
        self.approvals = self.alerts = self.events = None
        self.chain = self.verify_button = self.activity = self.activity_chart = None
        self.users = None

        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("nexml-summary-refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        who = ws.principal
        header = widgets.HTML(
            markup.heading("Platform summary", 3)
            + f"<p>Signed in as <b>{html.escape(who.name)}</b> ({html.escape(who.role.value)});"
            f" traffic and activity over the last {int(days)} days (UTC).</p>"
        )
        boxes: list[widgets.Widget] = [header, widgets.HBox([self.refresh_button]), self.message]

        if may(ws, "model.view"):
            self.inventory = widgets.HTML()
            self.inventory_chart = widgets.Box()
            boxes.append(self._section("Inventory by status", "nexml-summary-inventory",
                                       self.inventory, self.inventory_chart))
            self.deployments = widgets.HTML()
            boxes.append(self._section("Deployments and their health",
                                       "nexml-summary-deployments", self.deployments))
            self.approvals = widgets.HTML()
            boxes.append(self._section("Pending approvals", "nexml-summary-approvals",
                                       self.approvals))
        if may(ws, "compliance.view") and may(ws, "model.view"):
            self.compliance = widgets.HTML()
            self.compliance_chart = widgets.Box()
            boxes.append(self._section("Compliance scores", "nexml-summary-compliance",
                                       self.compliance, self.compliance_chart))
        self.alerts = widgets.HTML()  # says so when the role may not read alerts
        boxes.append(self._section("Alerts", "nexml-summary-alerts", self.alerts))
        if may(ws, "audit.view"):
            self.events = widgets.HTML()
            boxes.append(self._section("Recent events", "nexml-summary-events", self.events))
        if may(ws, "audit.verify"):
            self.chain = widgets.HTML()
            self.chain.add_class("nexml-summary-chain")
            self.verify_button = widgets.Button(description="Verify audit chains",
                                                icon="shield", button_style="primary")
            self.verify_button.add_class("nexml-summary-verify")
            self.verify_button.on_click(lambda _: self.verify())
            boxes.append(self._section("Audit chains", "nexml-summary-chains",
                                       self.verify_button, self.chain))
        if may(ws, "audit.view"):
            self.activity = widgets.HTML()
            self.activity_chart = widgets.Box()
            boxes.append(self._section("User activity", "nexml-summary-activity",
                                       self.activity, self.activity_chart))
        if may(ws, "user.manage"):
            self.users = widgets.HTML()
            boxes.append(self._section("Users by role", "nexml-summary-users", self.users))
        super().__init__(boxes)
        self.add_class("nexml-summary")
        self.refresh()
        if self.chain is not None:
            small = self._chain_records() <= VERIFY_ON_OPEN_LIMIT
            if verify_on_open if verify_on_open is not None else small:
                self.verify()

    def _section(self, title: str, css: str, *children: widgets.Widget) -> widgets.VBox:
        box = section(title, css, *children)
        self.sections[css] = box
        return box

    # --- reading -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read every section from the Workspace (a refusal is shown, not raised)."""
        since = (datetime.now(UTC) - timedelta(days=self.days)).date()
        for part in (self._inventory, lambda: self._deployments(since), self._approvals,
                     self._compliance, self._alerts, self._events, self._chain_heads,
                     lambda: self._activity(since), self._users):
            try:
                part()
            except NexmlError as exc:
                self.message.refused(exc)

    def _inventory(self) -> None:
        if self.inventory is None:
            return
        self.counts = self.ws.inventory()
        order = [s for s in STATUS_ORDER if s in self.counts] + [
            s for s in self.counts if s not in STATUS_ORDER
        ]
        total = sum(self.counts.values())
        self.inventory.value = markup.table(
            ["status", "versions"],
            [{"status": s, "versions": self.counts[s]} for s in order]
            + [{"status": "all", "versions": total}],
        )
        self.inventory_chart.children = [bars(
            order, [self.counts[s] for s in order], title="Model versions by status",
            xlabel="versions", colours=[STATUS_BAR_COLOURS.get(s, charts.BAR_COLOUR)
                                        for s in order],
        )]

    def _deployments(self, since: Any) -> None:
        if self.deployments is None:
            return
        if may(self.ws, "prediction.read"):
            self.health = self.ws.deployment_health(since=since)
            rows = [
                {"deployment": h.deployment, "serves": h.model_ref, "status": h.status,
                 "size": h.size, "decisions": h.decisions, "shadow": h.shadow,
                 "with outcome": h.with_outcome, "mean ms": h.latency_mean_ms,
                 "p50 ms": h.latency_p50_ms, "p95 ms": h.latency_p95_ms,
                 "max ms": h.latency_max_ms, "last decision": when(h.last_at)}
                for h in self.health
            ]
            columns = ["deployment", "serves", "status", "size", "decisions", "shadow",
                       "with outcome", "mean ms", "p50 ms", "p95 ms", "max ms", "last decision"]
            note = f"<p style='font-size:11px;color:#555'>{html.escape(ERRORS_NOTE)}</p>"
        else:
            rows = [
                {"deployment": d.name, "serves": d.model_ref, "status": d.status,
                 "size": d.size, "since": when(d.updated_at)}
                for d in self.ws.deployments()
            ]
            columns = ["deployment", "serves", "status", "size", "since"]
            note = ("<p style='font-size:11px;color:#555'>Traffic and latency come from the "
                    "recorded decisions, which your role may not read.</p>")
        self.deployments.value = markup.table(
            columns, rows, flagged=lambda r: r["status"] != "active", mark="inactive",
        ) + note

    def _approvals(self) -> None:
        if self.approvals is None:
            return
        staged = self.ws.all_versions(status="staging")
        self.pending = [v.ref for v in staged]
        rows = []
        for v in staged:
            row = {"version": v.ref, "author": v.author, "registered": when(v.created_at),
                   "validated": None, "compliance": None}
            try:
                validations = self.ws.validations(v.ref)
                row["validated"] = any(x.artifact_sha256 == v.artifact_sha256
                                       for x in validations)
                if may(self.ws, "compliance.view"):
                    row["compliance"] = self.ws.compliance(v.ref).score().total
            except PermissionDenied:
                pass
            rows.append(row)
        self.approvals.value = markup.table(
            ["version", "author", "registered", "validated", "compliance"], rows,
            labels={"compliance": "compliance score"},
        )

    def _compliance(self) -> None:
        if self.compliance is None:
            return
        versions = [v for v in self.ws.all_versions() if v.status in
                    ("staging", "approved", "deployed")]
        rows, self.scores = [], {}
        for v in versions:
            state = self.ws.compliance(v.ref).state()
            self.scores[v.ref] = state.score.total
            rows.append({"version": v.ref, "status": v.status, "tier": state.tier,
                         "score": state.score.total,
                         "missing mandatory": list(state.score.missing_mandatory)})
        self.compliance.value = markup.table(
            ["version", "status", "tier", "score", "missing mandatory"], rows,
            flagged=lambda r: bool(r["missing mandatory"]),
        )
        self.compliance_chart.children = [bars(
            [r["version"] for r in rows], [r["score"] for r in rows],
            title="Compliance score (0-100)", xlabel="score",
            colours=[charts.STATUS_COLOURS["alert"] if r["missing mandatory"]
                     else charts.STATUS_COLOURS["ok"] for r in rows],
        )]

    def _alerts(self) -> None:
        if self.alerts is None:
            return
        try:
            self.alert_rows = list(self.ws.alerts())
        except PermissionDenied:
            self.alerts.value = "<i>your role may not read alerts</i>"
            return
        self.alerts.value = alerts_table(self.alert_rows)

    def _events(self) -> None:
        if self.events is None:
            return
        rows = [
            {"seq": e.seq, "when": when(e.at), "who": e.actor, "role": e.actor_role,
             "action": e.action, "object": e.object_ref}
            for e in self.ws.recent_events(20)
        ]
        self.events.value = markup.table(["seq", "when", "who", "role", "action", "object"],
                                         rows)

    def _chain_records(self) -> int:
        try:
            return sum(self.ws.chain_sizes().values())
        except PermissionDenied:
            return VERIFY_ON_OPEN_LIMIT + 1

    def _chain_heads(self) -> None:
        if self.chain is None:
            return
        self._show_chains()

    def verify(self) -> Any:
        """Recompute every audit chain (``ws.audit.verify()``) and show the verdict."""
        if self.chain is None:
            return None
        done, result = self.message.attempt(self.ws.audit.verify)
        if done:
            self.verification = result
            if result.ok:
                self.message.ok(f"all {len(result.chains)} audit chains verified")
            else:
                self.message.show(f"audit chain broken: {result.first_failure}", "error")
            self._show_chains()
        return result if done else None

    def _show_chains(self) -> None:
        heads = self.ws.audit.heads() if may(self.ws, "audit.view") else {}
        verified = {c.chain: c for c in self.verification.chains} if self.verification else {}
        names = sorted(set(heads) | set(verified))
        rows = []
        for name in names:
            head = heads.get(name, {})
            result = verified.get(name)
            state = ("not verified yet" if result is None
                     else "verified" if result.ok
                     else f"BROKEN at record {result.first_bad_seq}: {result.problem}")
            rows.append({"chain": name, "records": head.get("seq"),
                         "head": str(head.get("hash", ""))[:16] + "…", "verification": state})
        status = ("" if self.verification is None else
                  "<p class='nexml-chain-ok' style='color:#1a7f37'><b>All chains verified.</b></p>"
                  if self.verification.ok else
                  "<p class='nexml-chain-broken' style='color:#b42318'><b>A chain is broken: "
                  f"{html.escape(str(self.verification.first_failure))}</b></p>")
        self.chain.value = status + markup.table(
            ["chain", "records", "head", "verification"], rows,
            flagged=lambda r: r["verification"].startswith("BROKEN"), mark="broken",
        )

    def _activity(self, since: Any) -> None:
        if self.activity is None:
            return
        self.activity_rows = self.ws.activity(since=since)
        self.activity.value = markup.table(
            ["user", "role", "events", "last event"],
            [{"user": a.actor, "role": a.role, "events": a.events,
              "last event": when(a.last_at)} for a in self.activity_rows],
        )
        top = self.activity_rows[:15]
        self.activity_chart.children = [bars(
            [a.actor for a in top], [a.events for a in top],
            title=f"Events per user, last {int(self.days)} days", xlabel="events",
        )]

    def _users(self) -> None:
        if self.users is None:
            return
        users = self.ws.users()
        rows: dict[str, dict[str, int]] = {}
        for u in users:
            r = rows.setdefault(u.role, {"active": 0, "disabled": 0})
            r["disabled" if u.disabled else "active"] += 1
        self.users.value = markup.table(
            ["role", "active", "disabled"],
            [{"role": role, **counts} for role, counts in sorted(rows.items())],
        )


def alerts_table(rows: Sequence[Any]) -> str:
    """Alerts (``ws.alerts``) as an escaped HTML table, newest first; open ones highlighted."""

    def get(a: Any, name: str) -> Any:
        return a.get(name) if isinstance(a, dict) else getattr(a, name, None)

    shown = []
    for a in rows:
        seen = get(a, "last_seen_at") or get(a, "created_at")
        subject = get(a, "deployment") or get(a, "subject_ref")
        shown.append({
            "id": get(a, "id"), "last seen": when(seen) if isinstance(seen, datetime) else seen,
            "severity": get(a, "severity"), "kind": get(a, "kind"), "deployment": subject,
            "metric": get(a, "metric"), "feature": get(a, "feature") or None,
            "windows": get(a, "count"), "message": get(a, "message"), "status": get(a, "status"),
            "acknowledged by": get(a, "acknowledged_by"), "note": get(a, "note"),
        })
    return markup.table(
        ["id", "last seen", "severity", "kind", "deployment", "metric", "feature", "windows",
         "message", "status", "acknowledged by", "note"], shown,
        flagged=lambda r: r["status"] == "open", mark="open",
    )


def platform_summary(ws: Any, **kwargs: Any) -> PlatformSummaryDashboard:
    """The platform summary as ``ws``'s principal may see it."""
    return PlatformSummaryDashboard(ws, **kwargs)
