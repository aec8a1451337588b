"""The compliance officer's dashboard: records and scores, templates and tiers, audit reports.

``ComplianceDashboard(ws)`` reads and writes through the Workspace as ``ws``'s principal:

- every model version's compliance score, tier and missing mandatory sections, and one chosen
  version's sections (``ws.compliance(ref)``), with a completeness chart;
- the packaged templates and the risk-tier policy in force (``ws.tier_policy()``); principals
  granted ``compliance.configure`` get an editor that saves through ``ws.set_tier_policy``, and
  those granted ``compliance.set_tier`` may set one version's tier with a reason;
- audit reports for any date range: the platform makes it in process (``ws.make_report("audit",
  since=..., until=...)``, a few seconds: a report notebook runs in a fresh kernel) while the
  status line says so, then offers it as a download link (``<a download href="data:text/html;
  base64,...">``, which works in Voila); shown only to roles that may ask for one;
- past reports (``ws.reports()``), each downloadable the same way.

Editors and buttons a role may not use are absent (``roles.grant``); the Workspace refuses
anyway, and any refusal is shown in a message line.

Stable CSS classes (``add_class``) for browser tests:

- ``nexml-compliance``: the dashboard itself
- ``nexml-compliance-versions``: scores of every version
- ``nexml-compliance-version``: the version chooser (Dropdown)
- ``nexml-compliance-sections``: the chosen version's sections
- ``nexml-compliance-templates``: the templates
- ``nexml-compliance-policy``: the tier policy in force
- ``nexml-compliance-policy-editor`` / ``nexml-compliance-policy-save``: its editor and button
- ``nexml-compliance-tier``: setting one version's tier (with ``-tier-value``,
  ``-tier-reason``, ``-tier-save``)
- ``nexml-compliance-from`` / ``nexml-compliance-to``: the audit report's dates (DatePickers)
- ``nexml-compliance-generate``: the button that has the platform make the audit report
- ``nexml-compliance-status``: the status line (generating, done, refused)
- ``nexml-compliance-download``: the container of the new report's download link
- ``nexml-compliance-reports``: past reports; ``nexml-compliance-report-select`` and
  ``nexml-compliance-report-get`` choose one, ``nexml-compliance-past-download`` holds its link
"""

from __future__ import annotations

import base64
import hashlib
import html
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ipywidgets as widgets

from ...errors import NexmlError
from ...governance import compliance as policy
from ...governance.roles import Grant, grant
from . import charts, markup
from .platform_summary import bars, may, section, when

TIERS = (1, 2, 3)


def download_link(report: Any, data: bytes) -> str:
    """An ``<a download>`` link carrying the report's HTML as a base64 data URL, with its
    number, title and SHA-256 (so the person can check the file against the record)."""
    encoded = base64.b64encode(data).decode("ascii")
    name = f"nexml-report-{int(report.id)}-{report.kind}.html"
    digest = hashlib.sha256(data).hexdigest()
    return (
        f'<a class="nexml-report-link" download="{html.escape(name)}" '
        f'href="data:text/html;base64,{encoded}">Download report #{int(report.id)}: '
        f"{html.escape(report.title)}</a> <span style='font-size:11px;color:#555'>"
        f"({len(data):,} bytes, SHA-256 {digest[:16]}…)</span>"
    )


def may_make(ws: Any, kind: str) -> bool:
    """Whether ``ws``'s principal may have the platform make a ``kind`` report: the same test
    as ``make_report`` (``report.generate`` and, fully, each read the kind requires)."""
    from ...reports.kinds import kind as kind_of

    role = ws.principal.role
    spec = kind_of(kind)
    return grant(role, "report.generate") is Grant.ALLOW and all(
        grant(role, action) is Grant.ALLOW for action in spec.requires
    )


class ComplianceDashboard(widgets.VBox):
    """The compliance dashboard for ``ws``'s principal.

    Attributes: ``versions`` (HTML), ``version`` (Dropdown), ``sections`` (HTML),
    ``section_chart``, ``templates`` (HTML), ``policy`` (HTML), ``policy_boxes`` ((tier,
    section) → Checkbox; empty without ``compliance.configure``), ``policy_save`` (Button or
    None), ``policy_message``, ``tier_value``/``tier_reason``/``tier_save`` (None without
    ``compliance.set_tier``), ``since``/``until`` (DatePicker), ``generate_button``,
    ``status`` (:class:`~.markup.Message`), ``download`` (HTML) — those four None when the
    role may not ask for an audit report —, ``reports`` (HTML), ``report_select``,
    ``report_get``, ``past_download``; ``last_report`` is the report made last.
    """

    def __init__(self, ws: Any, *, days: int = 30) -> None:
        self.ws = ws
        self.last_report: Any = None
        self.scores: dict[str, int] = {}
        self.message = markup.Message()
        who = ws.principal
        header = widgets.HTML(
            markup.heading("Compliance", 3)
            + f"<p>Signed in as <b>{html.escape(who.name)}</b> ({html.escape(who.role.value)}).</p>"
        )
        boxes: list[widgets.Widget] = [header, self.message]

        # --- records and scores
        self.versions = widgets.HTML()
        self.versions_chart = widgets.Box()
        self.version = widgets.Dropdown(description="Version", options=[])
        self.version.add_class("nexml-compliance-version")
        self.sections = widgets.HTML()
        self.sections.add_class("nexml-compliance-sections")
        self.section_chart = widgets.Box()
        self.version.observe(lambda _: self.show_version(), names="value")
        boxes.append(section("Scores per model version", "nexml-compliance-versions",
                             self.versions, self.versions_chart))
        boxes.append(section("Sections of one version", "nexml-compliance-record",
                             self.version, self.sections, self.section_chart))

        # --- one version's tier (compliance officers)
        self.tier_value = self.tier_reason = self.tier_save = None
        self.tier_message = markup.Message()
        if may(ws, "compliance.set_tier"):
            self.tier_value = widgets.Dropdown(description="Tier", options=list(TIERS), value=1)
            self.tier_value.add_class("nexml-compliance-tier-value")
            self.tier_reason = widgets.Text(placeholder="Why this tier (required)",
                                            layout=widgets.Layout(width="60%"))
            self.tier_reason.add_class("nexml-compliance-tier-reason")
            self.tier_save = widgets.Button(description="Set tier", button_style="warning")
            self.tier_save.add_class("nexml-compliance-tier-save")
            self.tier_save.on_click(lambda _: self.set_tier())
            boxes.append(section(
                "Risk tier of the chosen version", "nexml-compliance-tier",
                widgets.HBox([self.tier_value, self.tier_reason, self.tier_save]),
                self.tier_message,
            ))

        # --- templates and the tier policy
        self.templates = widgets.HTML()
        boxes.append(section("Templates", "nexml-compliance-templates", self.templates))
        self.policy = widgets.HTML()
        self.policy_boxes: dict[tuple[int, str], widgets.Checkbox] = {}
        self.policy_save = None
        self.policy_message = markup.Message()
        policy_children: list[widgets.Widget] = [self.policy]
        if may(ws, "compliance.configure"):
            editor = self._policy_editor()
            self.policy_save = widgets.Button(description="Save tier policy",
                                              button_style="primary", icon="save")
            self.policy_save.add_class("nexml-compliance-policy-save")
            self.policy_save.on_click(lambda _: self.save_policy())
            policy_children += [
                widgets.HTML("<p>Mandatory sections per tier (tier 1 is the highest risk):</p>"),
                editor, self.policy_save, self.policy_message,
            ]
        boxes.append(section("Risk-tier policy", "nexml-compliance-policy", *policy_children))

        # --- audit reports
        self.since = self.until = self.generate_button = self.status = self.download = None
        if may_make(ws, "audit"):
            today = datetime.now(UTC).date()
            self.since = widgets.DatePicker(description="From", value=today - timedelta(days=days))
            self.since.add_class("nexml-compliance-from")
            self.until = widgets.DatePicker(description="To", value=today)
            self.until.add_class("nexml-compliance-to")
            self.generate_button = widgets.Button(description="Generate audit report",
                                                  button_style="primary", icon="file")
            self.generate_button.add_class("nexml-compliance-generate")
            self.generate_button.on_click(lambda _: self.generate())
            self.status = markup.Message()
            self.status.add_class("nexml-compliance-status")
            self.download = widgets.HTML()
            self.download.add_class("nexml-compliance-download")
            boxes.append(section(
                "Audit report for a period", "nexml-compliance-audit",
                widgets.HTML("<p>Dates are UTC and both days are included. The platform makes "
                             "the report (it verifies every chain and lists the period's "
                             "decisions); it takes a few seconds.</p>"),
                widgets.HBox([self.since, self.until, self.generate_button]),
                self.status, self.download,
            ))

        # --- past reports
        self.reports = widgets.HTML()
        self.report_select = widgets.Dropdown(description="Report", options=[])
        self.report_select.add_class("nexml-compliance-report-select")
        self.report_get = widgets.Button(description="Prepare download", icon="download")
        self.report_get.add_class("nexml-compliance-report-get")
        self.report_get.on_click(lambda _: self.prepare_download())
        self.past_download = widgets.HTML()
        self.past_download.add_class("nexml-compliance-past-download")
        self.report_message = markup.Message()
        if may(ws, "report.view"):
            boxes.append(section(
                "Reports made by the platform", "nexml-compliance-reports",
                self.reports, widgets.HBox([self.report_select, self.report_get]),
                self.report_message, self.past_download,
            ))
        super().__init__(boxes)
        self.add_class("nexml-compliance")
        self.refresh()

    # --- reading -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read versions, scores, templates, the policy and the reports."""
        for part in (self._versions, self._templates, self._policy, self._reports):
            try:
                part()
            except NexmlError as exc:
                self.message.refused(exc)

    def _versions(self) -> None:
        rows = []
        self.scores = {}
        for v in self.ws.all_versions():
            state = self.ws.compliance(v.ref).state()
            self.scores[v.ref] = state.score.total
            rows.append({
                "version": v.ref, "status": v.status, "template": v.template,
                "tier": state.tier, "tier from": state.tier_source, "score": state.score.total,
                "missing mandatory": list(state.score.missing_mandatory),
            })
        self.versions.value = markup.table(
            ["version", "status", "template", "tier", "tier from", "score", "missing mandatory"],
            rows, flagged=lambda r: bool(r["missing mandatory"]), mark="incomplete",
        )
        live = [r for r in rows if r["status"] in ("staging", "approved", "deployed")]
        self.versions_chart.children = [bars(
            [r["version"] for r in live], [r["score"] for r in live],
            title="Compliance score of versions in staging, approved or deployed",
            xlabel="score (0-100)",
            colours=[charts.STATUS_COLOURS["alert"] if r["missing mandatory"]
                     else charts.STATUS_COLOURS["ok"] for r in live],
        )]
        refs = [r["version"] for r in rows]
        current = self.version.value
        self.version.options = refs
        if refs:
            self.version.value = current if current in refs else refs[-1]
        self.show_version()

    def show_version(self) -> None:
        """Show the chosen version's sections: mandatory, complete, points, missing fields."""
        ref = self.version.value
        if not ref:
            self.sections.value = "<i>no model version registered yet</i>"
            self.section_chart.children = []
            return
        done, state = self.message.attempt(lambda: self.ws.compliance(ref).state())
        if not done:
            return
        titles = {sid: spec.title for sid, spec in policy.sections().items()}
        rows = [
            {"section": titles.get(line.section_id, line.section_id),
             "mandatory": line.mandatory,
             "complete": state.statuses[line.section_id].complete,
             "filled": f"{state.statuses[line.section_id].filled}/"
                       f"{state.statuses[line.section_id].required}",
             "points": line.points,
             "missing fields": list(state.statuses[line.section_id].missing)}
            for line in state.score.lines
        ]
        summary = markup.definitions([
            ("version", ref),
            ("template", state.template.name if state.template else None),
            ("risk tier", f"{state.tier} (from {state.tier_source})"),
            ("score", f"{state.score.total} / 100"),
            ("mandatory sections complete", state.score.mandatory_complete),
        ])
        self.sections.value = summary + markup.table(
            ["section", "mandatory", "complete", "filled", "points", "missing fields"], rows,
            flagged=lambda r: r["mandatory"] and not r["complete"], mark="missing",
        )
        lines = state.score.lines
        self.section_chart.children = [bars(
            [titles.get(x.section_id, x.section_id) + (" *" if x.mandatory else "")
             for x in lines],
            [x.completeness for x in lines],
            title=f"Completeness of {ref} per section (* mandatory)", xlabel="share complete",
            colours=[charts.STATUS_COLOURS["ok"] if x.completeness >= 1
                     else charts.STATUS_COLOURS["alert"] if x.mandatory
                     else charts.STATUS_COLOURS["warn"] for x in lines],
        )]
        if self.tier_value is not None:
            self.tier_value.value = state.tier

    def _templates(self) -> None:
        rows = [
            {"name": t.name, "title": t.title, "default tier": t.default_tier,
             "extra mandatory": sorted(t.extra_mandatory), "regulations": list(t.regulations),
             "thresholds": ", ".join(f"{k} {v:g}" for k, v in sorted(t.thresholds.items())),
             "protected attributes": list(t.protected_attributes)}
            for t in policy.templates().values()
        ]
        self.templates.value = markup.table(
            ["name", "title", "default tier", "extra mandatory", "regulations", "thresholds",
             "protected attributes"], rows,
        )

    def _policy(self) -> None:
        current = self.ws.tier_policy()
        self.current_policy = current
        order = policy.SECTION_IDS
        rows = [
            {"tier": tier, "mandatory sections": [s for s in order if s in current.mandatory[tier]]}
            for tier in TIERS
        ]
        self.policy.value = markup.table(["tier", "mandatory sections"], rows)
        for (tier, sid), box in self.policy_boxes.items():
            box.value = sid in current.mandatory[tier]

    def _policy_editor(self) -> widgets.GridBox:
        titles = {sid: spec.title for sid, spec in policy.sections().items()}
        cells: list[widgets.Widget] = [widgets.HTML("<b>section</b>")] + [
            widgets.HTML(f"<b>tier {tier}</b>") for tier in TIERS
        ]
        for sid in policy.SECTION_IDS:
            cells.append(widgets.HTML(html.escape(titles.get(sid, sid))))
            for tier in TIERS:
                box = widgets.Checkbox(value=False, indent=False,
                                       layout=widgets.Layout(width="auto"))
                box.add_class(f"nexml-policy-{tier}-{sid}")
                self.policy_boxes[(tier, sid)] = box
                cells.append(box)
        grid = widgets.GridBox(cells, layout=widgets.Layout(
            grid_template_columns="220px 70px 70px 70px"))
        grid.add_class("nexml-compliance-policy-editor")
        return grid

    def _reports(self) -> None:
        if not may(self.ws, "report.view"):
            return
        found = self.ws.reports(limit=50)
        self.reports.value = markup.table(
            ["id", "kind", "title", "period", "status", "made for", "when", "html SHA-256"],
            [{"id": r.id, "kind": r.kind, "title": r.title, "period": r.period or None,
              "status": r.status, "made for": r.created_by, "when": when(r.created_at),
              "html SHA-256": (r.html_sha256 or "")[:16] or None} for r in found],
            flagged=lambda r: r["status"] in ("failed", "abandoned"), mark="failed",
        )
        options = [(f"#{r.id} {r.title}", r.id) for r in found if r.status == "done"]
        current = self.report_select.value
        self.report_select.options = options
        ids = [value for _, value in options]
        if ids:
            self.report_select.value = current if current in ids else ids[0]

    # --- acting --------------------------------------------------------------------------------

    def save_policy(self) -> Any:
        """Save the editor's mandatory sections per tier (materiality kept as it is)."""
        chosen = {
            str(tier): [s for s in policy.SECTION_IDS if self.policy_boxes[(tier, s)].value]
            for tier in TIERS
        }

        def save() -> Any:
            materiality = self.ws.tier_policy().to_dict()["materiality"]
            return self.ws.set_tier_policy({"mandatory": chosen, "materiality": materiality})

        done, saved = self.policy_message.attempt(save)
        if done:
            self.policy_message.ok("tier policy saved; every record is scored against it now")
            self.refresh()
        return saved if done else None

    def set_tier(self) -> Any:
        """Set the chosen version's risk tier with the reason given."""
        ref = self.version.value
        if not ref or self.tier_value is None:
            return None
        tier, reason = self.tier_value.value, self.tier_reason.value
        done, result = self.tier_message.attempt(
            lambda: self.ws.compliance(ref).set_tier(tier, reason=reason)
        )
        if done:
            self.tier_message.ok(f"{ref} is tier {result[0]} ({result[1]})")
            self.tier_reason.value = ""
            self.refresh()
        return result if done else None

    def generate(self) -> Any:
        """Have the platform make the audit report of the chosen dates; show its link."""
        if self.generate_button is None:
            return None
        since, until = self.since.value, self.until.value
        if not isinstance(since, date) or not isinstance(until, date):
            self.status.show("choose both dates (From and To) first", "error")
            return None
        self.download.value = ""
        self.generate_button.disabled = True
        self.status.show(
            f"Generating the audit report for {since} to {until}: the platform is running the "
            "report notebook…"
        )
        try:
            done, report = self.status.attempt(
                lambda: self.ws.make_report("audit", since=since, until=until)
            )
            if not done:
                return None
            ok, data = self.status.attempt(lambda: self.ws.report_html(report.id))
            if not ok:
                return None
            self.last_report = report
            self.download.value = download_link(report, data)
            verdict = (report.summary or {}).get("verification") or {}
            chains = "" if not verdict else (
                "; every audit chain verified" if verdict.get("ok")
                else "; A CHAIN FAILED VERIFICATION (see the report's banner)"
            )
            self.status.ok(f"Audit report #{report.id} is ready ({report.period}){chains}")
            self._reports()
            return report
        finally:
            self.generate_button.disabled = False

    def prepare_download(self) -> bytes | None:
        """Fill the past-report link for the chosen report (its bytes checked on reading)."""
        report_id = self.report_select.value
        if report_id is None:
            self.report_message.show("no finished report to download yet")
            return None
        done, data = self.report_message.attempt(lambda: self.ws.report_html(report_id))
        if not done:
            self.past_download.value = ""
            return None
        report = self.ws.report(report_id)
        self.past_download.value = download_link(report, data)
        self.report_message.ok(f"report #{report_id} checked against its SHA-256")
        return data


def compliance_dashboard(ws: Any, **kwargs: Any) -> ComplianceDashboard:
    """The compliance dashboard as ``ws``'s principal may see and use it."""
    return ComplianceDashboard(ws, **kwargs)
