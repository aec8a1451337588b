"""The audit-trail dashboard: find recorded decisions, open one, export them to CSV.

``AuditTrailDashboard(ws)`` filters decisions by date range (UTC days, both included), route,
subject id and deployment through ``Workspace.search_decisions``; opening one reads it again by
request id and shows its inputs, output, confidence, reasons, model version, artifact hash,
route and rule, caller, latency and chain proof; exporting calls
``Workspace.export_decisions`` for the decisions found and offers the CSV as a download link
(``<a download href="data:text/csv;base64,...">``). Every search, opening and export by a
person is itself an event in the audit chain (``prediction.read``, ``prediction.export``),
recorded by the Workspace. A role without ``prediction.read`` gets no search controls, only a
sentence saying so; the Workspace refuses anyway.

Stable CSS classes (the browser tests find controls by them):

- ``nexml-audit`` — the dashboard itself
- ``nexml-audit-subject`` — subject id (text)
- ``nexml-audit-from`` / ``nexml-audit-to`` — date pickers (UTC days, both included)
- ``nexml-audit-route`` — route drop-down ("any route" first)
- ``nexml-audit-deployment`` — deployment drop-down ("any deployment" first)
- ``nexml-audit-search`` — the search button
- ``nexml-audit-results`` — the results table (one ``<tr class="nexml-audit-result">`` each)
- ``nexml-audit-pick`` — the drop-down choosing which decision to open
- ``nexml-audit-open`` — the open button
- ``nexml-audit-detail`` — the opened decision
- ``nexml-audit-export`` — the export button; the link then appears in
  ``nexml-audit-download`` (an ``<a class="nexml-audit-download-link" download=...>``)
- ``nexml-audit-status`` — the one status line: what was found, or what was refused and why
"""

from __future__ import annotations

import base64
import html
import json
import logging
from datetime import UTC, datetime
from typing import Any

import ipywidgets as widgets

from ...errors import NexmlError
from ...governance.roles import grant
from . import markup

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 200
_ANY = ""


class AuditTrailDashboard(widgets.VBox):
    """Search, open and export recorded decisions as ``ws``'s principal.

    Attributes: ``subject``, ``date_from``, ``date_to``, ``route``, ``deployment``, ``limit``,
    ``search_button``, ``results`` (HTML), ``pick``, ``open_button``, ``detail`` (HTML),
    ``export_button``, ``download`` (HTML), ``status`` (:class:`~.markup.Message`);
    ``found`` holds the decisions of the last search and ``opened`` the one opened. When the
    role may not read decisions, ``can_search`` is False and the controls are None.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.found: list[Any] = []
        self.opened: Any = None
        self.status = markup.Message()
        self.status.add_class("nexml-audit-status")
        self.can_search = grant(ws.principal.role, "prediction.read") is not None
        title = widgets.HTML(
            "<div>Signed in as <b>" + html.escape(str(ws.principal.name)) + "</b> ("
            + html.escape(ws.principal.role.value) + "). Every look-up and export is itself "
            "recorded in the audit trail.</div>"
        )
        self.subject = self.date_from = self.date_to = self.route = self.deployment = None
        self.limit = self.search_button = self.pick = self.open_button = None
        self.export_button = None
        self.results = widgets.HTML()
        self.detail = widgets.HTML()
        self.download = widgets.HTML()
        if not self.can_search:
            self.status.show(
                f"A {ws.principal.role.value} may not read recorded decisions; compliance "
                "officers and superadmins may.", "error",
            )
            super().__init__([title, self.status])
            self.add_class("nexml-audit")
            return
        self.subject = _classed(widgets.Text(description="Subject id",
                                             placeholder="e.g. applicant-17"),
                                "nexml-audit-subject")
        self.date_from = _classed(widgets.DatePicker(description="From (UTC)"),
                                  "nexml-audit-from")
        self.date_to = _classed(widgets.DatePicker(description="To (UTC)"), "nexml-audit-to")
        self.route = _classed(widgets.Dropdown(description="Route"), "nexml-audit-route")
        self.deployment = _classed(widgets.Dropdown(description="Deployment"),
                                   "nexml-audit-deployment")
        self.limit = _classed(
            widgets.BoundedIntText(value=DEFAULT_LIMIT, min=1, max=10_000, description="At most"),
            "nexml-audit-limit",
        )
        self.search_button = _classed(
            widgets.Button(description="Search", button_style="primary", icon="search"),
            "nexml-audit-search",
        )
        self.results.add_class("nexml-audit-results")
        self.pick = _classed(widgets.Dropdown(description="Decision", options=[],
                                              layout=widgets.Layout(width="60%")),
                             "nexml-audit-pick")
        self.open_button = _classed(widgets.Button(description="Open", icon="folder-open"),
                                    "nexml-audit-open")
        self.detail.add_class("nexml-audit-detail")
        self.export_button = _classed(
            widgets.Button(description="Export to CSV", icon="download"), "nexml-audit-export"
        )
        self.download.add_class("nexml-audit-download")
        self.search_button.on_click(lambda _: self.search_decisions())
        self.open_button.on_click(lambda _: self.open_decision())
        self.export_button.on_click(lambda _: self.export_csv())
        self._load_choices()
        self._show_results()
        super().__init__([
            title,
            widgets.HBox([self.subject, self.route, self.deployment]),
            widgets.HBox([self.date_from, self.date_to, self.limit, self.search_button]),
            self.status,
            self.results,
            widgets.HBox([self.pick, self.open_button, self.export_button]),
            self.download,
            self.detail,
        ])
        self.add_class("nexml-audit")

    # --- actions -----------------------------------------------------------------------------

    def search_decisions(self) -> None:
        """Find the decisions matching the filters (the Workspace records the look-up)."""
        subject = self.subject.value.strip()
        done, found = self._attempt("search", lambda: self.ws.search_decisions(
            since=self.date_from.value, until=self.date_to.value,
            route=self.route.value or None, deployment=self.deployment.value or None,
            subject_id=subject or None, limit=int(self.limit.value),
        ))
        if not done:
            return
        self.found, self.opened = found, None
        self.detail.value = self.download.value = ""
        self._show_results()
        if not found:
            self.status.ok("No recorded decision matches; this look-up was recorded.")
            return
        more = (f" (the first {len(found)}; narrow the search for the rest)"
                if len(found) >= int(self.limit.value) else "")
        broken = sum(1 for d in found if d.link_verified is False)
        self.status.show(
            f"Found {len(found)} decision{'s' if len(found) != 1 else ''}{more}; this look-up "
            "was recorded."
            + (f" {broken} record(s) FAIL chain verification." if broken else ""),
            "error" if broken else "ok",
        )

    def open_decision(self, request_id: str | None = None) -> None:
        """Read one decision again by request id (a recorded look-up) and show all of it."""
        wanted = request_id or self.pick.value
        if not wanted:
            self.status.show("Nothing to open: search first, then choose a decision.", "error")
            return
        done, found = self._attempt("open the decision", lambda: self.ws.search_decisions(
            request_id=wanted, limit=1
        ))
        if not done:
            return
        if not found:
            self.status.show(f"No recorded decision has request id {wanted}.", "error")
            return
        self.opened = found[0]
        self.detail.value = decision_html(self.opened)
        self.status.ok(f"Opened decision {wanted}; this look-up was recorded.")

    def export_csv(self) -> None:
        """Export the decisions found to CSV, offered as a download link."""
        if not self.found:
            self.status.show("Nothing to export: search first.", "error")
            return
        ids = [d.request_id for d in self.found]
        done, data = self._attempt("export", lambda: self.ws.export_decisions(ids))
        if not done:
            return
        name = f"decisions-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
        encoded = base64.b64encode(data).decode("ascii")
        self.download.value = (
            f'<a class="nexml-audit-download-link" download="{name}" '
            f'href="data:text/csv;base64,{encoded}">Download {name} '
            f"({len(ids)} decision{'s' if len(ids) != 1 else ''})</a>"
        )
        self.status.ok(f"Exported {len(ids)} decision(s) to {name}; the export was recorded.")

    # --- helpers -----------------------------------------------------------------------------

    def _load_choices(self) -> None:
        routes: list[str] = []
        deployments: list[str] = []
        try:
            routes = [r.name for r in self.ws.routes()]
            deployments = [d.name for d in self.ws.deployments()]
        except NexmlError as exc:
            self.status.refused(exc)
        self.route.options = [("any route", _ANY), *[(r, r) for r in routes]]
        self.deployment.options = [("any deployment", _ANY), *[(d, d) for d in deployments]]
        self.route.value = self.deployment.value = _ANY

    def _show_results(self) -> None:
        rows = [
            {
                "when (UTC)": f"{d.at:%Y-%m-%d %H:%M:%S}",
                "subject": d.subject_id,
                "route": d.route,
                "deployment": d.deployment,
                "model": d.model_ref,
                "output": _output_text(d),
                "reasons": len(d.reasons or []),
                "chain": "ok" if d.link_verified else "BROKEN",
                "request": d.request_id,
            }
            for d in self.found
        ]
        table = markup.table(
            ["when (UTC)", "subject", "route", "deployment", "model", "output", "reasons",
             "chain", "request"],
            rows,
            flagged=lambda row: row["chain"] != "ok",
        )
        # Each body row carries a class the browser tests count.
        if self.found:
            table = table.replace("<tr><td", '<tr class="nexml-audit-result"><td')
        self.results.value = table
        self.pick.options = [
            (f"{d.at:%Y-%m-%d %H:%M:%S} · {d.subject_id or '-'} · {d.request_id}", d.request_id)
            for d in self.found
        ]
        self.pick.value = self.found[0].request_id if self.found else None

    def _attempt(self, what: str, action: Any) -> tuple[bool, Any]:
        try:
            return True, action()
        except NexmlError as exc:
            self.status.refused(exc)
        except Exception as exc:  # a dashboard never shows a traceback
            log.exception("audit-trail dashboard: %s failed", what)
            self.status.show(f"Could not {what}: {type(exc).__name__}: {exc}", "error")
        return False, None


def _classed(widget: widgets.Widget, name: str) -> Any:
    widget.add_class(name)
    return widget


def _output_text(d: Any) -> str:
    parts = []
    approved = (d.output or {}).get("approved")
    if approved is not None:
        parts.append("approved" if approved else "declined")
    if d.prediction is not None and approved is None:
        parts.append(str(d.prediction))
    if d.score is not None:
        parts.append(f"score {d.score:.3f}")
    if d.shadow:
        parts.append("shadow")
    return ", ".join(parts)


def decision_html(d: Any) -> str:
    """One decision in full, every value escaped."""
    facts = markup.definitions([
        ("request id", d.request_id),
        ("subject id", d.subject_id),
        ("decided at", f"{d.at:%Y-%m-%d %H:%M:%S.%f} UTC"),
        ("route", d.route),
        ("rule", d.rule),
        ("deployment", d.deployment),
        ("model version", d.model_ref),
        ("artifact SHA-256", d.artifact_sha256),
        ("output", _output_text(d)),
        ("prediction", d.prediction if not isinstance(d.prediction, dict | list)
         else json.dumps(d.prediction)),
        ("score", d.score),
        ("confidence", d.confidence),
        ("caller", d.caller),
        ("latency (ms)", d.latency_ms),
        ("shadow", d.shadow),
        ("outcome", None if d.outcome is None else
         f"{json.dumps(d.outcome)} at {d.outcome_at:%Y-%m-%d %H:%M} UTC"),
    ])
    reasons = markup.table(
        ["reason", "feature", "contribution"],
        [{"reason": r.get("reason"), "feature": r.get("feature"),
          "contribution": r.get("contribution")} for r in d.reasons or []],
    )
    inputs = markup.table(
        ["input", "value"],
        [{"input": k, "value": v if not isinstance(v, dict | list) else json.dumps(v)}
         for k, v in sorted((d.inputs or {}).items())],
    )
    state = {True: "link verified", False: "LINK BROKEN", None: "committed"}[d.link_verified]
    proof = markup.definitions([
        ("chain", d.chain),
        ("record", d.seq),
        ("hash", d.hash),
        ("previous hash", d.prev_hash),
        ("check", state),
        ("in one line", d.proof),
    ])
    return (
        markup.heading(f"Decision {d.request_id}", 4) + facts
        + markup.heading("Reasons") + reasons
        + markup.heading("Inputs") + inputs
        + markup.heading("Chain proof") + proof
    )
