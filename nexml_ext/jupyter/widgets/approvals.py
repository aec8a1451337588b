"""The manager's approvals dashboard: the queue of versions waiting for a decision or a deployment.

``ApprovalsDashboard(ws)`` shows, for every version in staging or approved (``ws.review_queue``),
its latest platform validation of the registered artifact (status, AUC with its interval, KS,
breaches), the compliance tier, score and missing mandatory sections, fairness flags, drift
and latency, and the platform-made validation report itself in a sandboxed ``<iframe srcdoc>``.
Approve / Reject (with findings, required) call ``Workspace.approve`` / ``reject``; Deploy
calls ``Workspace.deploy`` with a deployment name and a size from ``deploy.sizes``. Which
buttons exist follows ``governance.roles.grant`` for ``model.approve``, ``model.reject`` and
``model.deploy``; the Workspace refuses anyway (one's own version, no validation, incomplete
compliance ...), and its refusal is shown as one sentence in the status line. The queue is read
again after every action.

Stable CSS classes (the browser tests find controls by them):

- ``nexml-approvals`` — the dashboard itself
- ``nexml-approvals-row`` — one box per version (also ``nexml-approvals-row-<name>-<version>``)
- ``nexml-approvals-report`` — the validation report (an iframe) or why there is none
- ``nexml-approvals-findings`` — the findings text area (staging versions)
- ``nexml-approvals-approve`` / ``nexml-approvals-reject`` — the decision buttons
- ``nexml-approvals-deploy-name`` — the deployment name (approved versions)
- ``nexml-approvals-size`` — the size drop-down (small, medium, large)
- ``nexml-approvals-deploy`` — the deploy button
- ``nexml-approvals-status`` — the one status line: what happened, or what was refused and why
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import ipywidgets as widgets

from ...deploy.sizes import SIZES
from ...errors import NexmlError
from ...governance.roles import grant
from . import markup

log = logging.getLogger(__name__)

STATUS_COLOURS = {"staging": "#8a6d00", "approved": "#1a7f37"}
_REPORT_STYLE = "width:100%;height:520px;border:1px solid #ccc;background:#fff"


class VersionRow(widgets.VBox):
    """One version in the queue. ``ref``, ``status``; ``summary`` and ``report`` (HTML);
    ``findings``, ``approve_button``, ``reject_button``, ``deploy_name``, ``size``,
    ``deploy_button`` are None where the version's state or the viewer's role has no use for
    them."""

    def __init__(self, dashboard: ApprovalsDashboard, version: Any, kept: dict[str, Any]) -> None:
        self.ref = version.ref
        self.status = version.status
        ws = dashboard.ws
        self.summary = widgets.HTML(_summary(ws, version))
        self.report = widgets.HTML(dashboard.report_frame(version))
        self.report.add_class("nexml-approvals-report")
        self.findings = self.approve_button = self.reject_button = None
        self.deploy_name = self.size = self.deploy_button = None
        controls: list[widgets.Widget] = []
        if version.status == "staging" and (dashboard.can_approve or dashboard.can_reject):
            self.findings = widgets.Textarea(
                value=kept.get("findings", ""),
                placeholder="Findings: what you checked and what you concluded (required)",
                layout=widgets.Layout(width="100%", height="70px"),
            )
            self.findings.add_class("nexml-approvals-findings")
            buttons = []
            if dashboard.can_approve:
                self.approve_button = widgets.Button(
                    description="Approve", button_style="success", icon="check"
                )
                self.approve_button.add_class("nexml-approvals-approve")
                self.approve_button.on_click(lambda _: dashboard.decide(self, "approve"))
                buttons.append(self.approve_button)
            if dashboard.can_reject:
                self.reject_button = widgets.Button(
                    description="Reject", button_style="danger", icon="times"
                )
                self.reject_button.add_class("nexml-approvals-reject")
                self.reject_button.on_click(lambda _: dashboard.decide(self, "reject"))
                buttons.append(self.reject_button)
            controls = [self.findings, widgets.HBox(buttons)]
        elif version.status == "approved" and dashboard.can_deploy:
            self.deploy_name = widgets.Text(
                value=kept.get("deploy_name", version.name),
                description="Deployment",
                placeholder="deployment name",
            )
            self.deploy_name.add_class("nexml-approvals-deploy-name")
            self.size = widgets.Dropdown(
                options=list(SIZES), value=kept.get("size", SIZES[0]), description="Size"
            )
            self.size.add_class("nexml-approvals-size")
            self.deploy_button = widgets.Button(
                description="Deploy", button_style="primary", icon="rocket"
            )
            self.deploy_button.add_class("nexml-approvals-deploy")
            self.deploy_button.on_click(lambda _: dashboard.deploy(self))
            controls = [widgets.HBox([self.deploy_name, self.size, self.deploy_button])]
        colour = STATUS_COLOURS.get(version.status, "#555")
        title = widgets.HTML(
            f"<h4 style='margin:8px 0 4px'>{html.escape(version.ref)} "
            f"<span style='color:{colour}'>{html.escape(version.status)}</span></h4>"
        )
        super().__init__(
            [title, self.summary, self.report, *controls],
            layout=widgets.Layout(border="1px solid #ddd", padding="6px", margin="0 0 10px 0"),
        )
        self.add_class("nexml-approvals-row")
        self.add_class("nexml-approvals-row-" + re.sub(r"[^A-Za-z0-9_-]", "-", version.ref))

    def kept(self) -> dict[str, Any]:
        """What the person typed or chose, to keep across a refresh."""
        kept: dict[str, Any] = {}
        if self.findings is not None:
            kept["findings"] = self.findings.value
        if self.deploy_name is not None:
            kept["deploy_name"] = self.deploy_name.value
            kept["size"] = self.size.value
        return kept


class ApprovalsDashboard(widgets.VBox):
    """The manager's queue as ``ws``'s principal sees it. ``rows`` maps each ref to its
    :class:`VersionRow`; ``status`` is the one status line (``status.text`` holds the plain
    sentence, ``status.kind`` is "ok" or "error"); ``refresh()`` reads the queue again."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        role = ws.principal.role
        self.can_approve = grant(role, "model.approve") is not None
        self.can_reject = grant(role, "model.reject") is not None
        self.can_deploy = grant(role, "model.deploy") is not None
        self.rows: dict[str, VersionRow] = {}
        self._reports: dict[int, str] = {}
        self.status = markup.Message()
        self.status.add_class("nexml-approvals-status")
        may = [verb for verb, ok in (("approve", self.can_approve), ("reject", self.can_reject),
                                     ("deploy", self.can_deploy)) if ok]
        self.header = widgets.HTML(
            "<div>Signed in as <b>" + html.escape(str(ws.principal.name)) + "</b> ("
            + html.escape(role.value) + "): "
            + (f"you may {', '.join(may)}." if may else "you may read this queue; "
               "decisions and deployments are for managers.")
            + "</div>"
        )
        self.queue = widgets.VBox()
        super().__init__([self.header, self.status, self.queue])
        self.add_class("nexml-approvals")
        self.refresh()

    # --- reading -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the queue again, keeping what was typed into rows that are still there."""
        kept = {ref: row.kept() for ref, row in self.rows.items()}
        try:
            versions = self.ws.review_queue()
        except NexmlError as exc:
            self.status.refused(exc)
            versions = []
        self.rows = {v.ref: VersionRow(self, v, kept.get(v.ref, {})) for v in versions}
        if self.rows:
            self.queue.children = tuple(self.rows.values())
        else:
            self.queue.children = (
                widgets.HTML("<i>Nothing waits for a decision or a deployment.</i>"),
            )

    def report_frame(self, version: Any) -> str:
        """The version's newest platform validation report of its registered artifact, as a
        sandboxed iframe (its HTML escaped into ``srcdoc``), or one sentence saying why not."""
        try:
            validations = self.ws.validations(version.ref)
        except NexmlError as exc:
            return _note(str(exc))
        reported = [
            v for v in validations
            if v.report_id is not None and v.artifact_sha256 == version.artifact_sha256
        ]
        if not reported:
            return _note(
                f"No platform validation report of {version.ref}'s artifact yet"
                + (" (validated in process only)." if validations else ".")
            )
        report_id = reported[-1].report_id
        if report_id not in self._reports:
            try:
                page = self.ws.report_html(report_id).decode("utf-8")
            except NexmlError as exc:
                return _note(f"Validation report {report_id}: {exc}")
            self._reports[report_id] = (
                f'<div style="font-size:12px;margin:2px 0">Platform validation report '
                f"#{report_id}</div>"
                f'<iframe title="Validation report {report_id}" sandbox="" '
                f'style="{_REPORT_STYLE}" srcdoc="{html.escape(page, quote=True)}"></iframe>'
            )
        return self._reports[report_id]

    # --- acting ------------------------------------------------------------------------------

    def decide(self, row: VersionRow, move: str) -> None:
        """Approve or reject ``row``'s version with the findings typed into it."""
        findings = (row.findings.value if row.findings is not None else "").strip()
        if not findings:
            self.status.show(
                f"Not {move}d: write your findings for {row.ref} first; a decision without "
                "findings is refused.", "error",
            )
            return
        action = self.ws.approve if move == "approve" else self.ws.reject
        done, approval = self._attempt(f"{move} {row.ref}",
                                       lambda: action(row.ref, findings=findings))
        if done:
            row.findings.value = ""
        self.refresh()
        if done:
            self.status.ok(f"{row.ref} {approval.decision} by {approval.approver}.")

    def deploy(self, row: VersionRow) -> None:
        """Deploy ``row``'s approved version under the name and size chosen in it."""
        name = row.deploy_name.value.strip()
        size = row.size.value
        done, deployment = self._attempt(
            f"deploy {row.ref}", lambda: self.ws.deploy(row.ref, name=name, size=size)
        )
        self.refresh()
        if done:
            self.status.ok(
                f"{deployment.model_ref} deployed as {deployment.name} ({deployment.size})."
            )

    def _attempt(self, what: str, action: Any) -> tuple[bool, Any]:
        """Run ``action``; the Workspace's refusal becomes the status line, and so does any
        other failure (logged with its traceback, never shown in the dashboard)."""
        try:
            return True, action()
        except NexmlError as exc:
            self.status.refused(exc)
        except Exception as exc:  # a dashboard never shows a traceback
            log.exception("approvals dashboard: %s failed", what)
            self.status.show(f"Could not {what}: {type(exc).__name__}: {exc}", "error")
        return False, None


def _note(text: str) -> str:
    return f'<div style="color:#555;font-size:12px"><i>{html.escape(text)}</i></div>'


def _summary(ws: Any, version: Any) -> str:
    """Author, validation, compliance, fairness, drift and latency of one version, escaped."""
    facts: list[tuple[str, Any]] = [
        ("author", version.author),
        ("template", version.template),
        ("registered", f"{version.created_at:%Y-%m-%d %H:%M} UTC"),
        ("artifact SHA-256", version.artifact_sha256),
    ]
    try:
        validations = ws.validations(version.ref)
    except NexmlError as exc:
        validations, facts = [], [*facts, ("validation", str(exc))]
    latest = next(
        (v for v in reversed(validations) if v.artifact_sha256 == version.artifact_sha256), None
    )
    if latest is None:
        facts.append(("validation", "none of this artifact yet"))
    else:
        facts += _validation_facts(latest)
    try:
        state = ws.compliance(version.ref).state()
    except NexmlError as exc:
        facts.append(("compliance", str(exc)))
    else:
        missing = ", ".join(state.score.missing_mandatory) or "none"
        done = sum(1 for s in state.statuses.values() if getattr(s, "complete", False))
        facts += [
            ("compliance score", f"{state.score.total}/100 (risk tier {state.tier})"),
            ("sections complete", f"{done} of {len(state.statuses)}"),
            ("mandatory sections missing", missing),
        ]
    return markup.definitions(facts)


def _validation_facts(v: Any) -> list[tuple[str, Any]]:
    m, d = v.metrics or {}, v.details or {}
    auc = m.get("roc_auc")
    interval = ""
    if m.get("roc_auc_ci_low") is not None and m.get("roc_auc_ci_high") is not None:
        interval = f" (95% CI {m['roc_auc_ci_low']:.3f}–{m['roc_auc_ci_high']:.3f})"
    performance = ", ".join(
        part for part in (
            f"AUC {auc:.3f}{interval}" if auc is not None else "",
            f"KS {m['ks']:.3f}" if m.get("ks") is not None else "",
            f"RMSE {m['rmse']:.4g}" if m.get("rmse") is not None else "",
        ) if part
    )
    source = f"report #{v.report_id}" if v.report_id is not None else "in process"
    facts: list[tuple[str, Any]] = [
        ("validation", f"{v.status} on {v.dataset or 'unrecorded data'} "
                       f"({source}, {v.created_at:%Y-%m-%d %H:%M} UTC)"),
        ("performance", performance or None),
        ("breaches", "; ".join(d.get("breaches") or []) or "none"),
    ]
    fairness = d.get("fairness")
    if fairness:
        flagged = fairness.get("flagged") or {}
        facts.append((
            "fairness flags",
            "; ".join(f"{a}: {', '.join(map(str, g))}" for a, g in flagged.items())
            or f"none (adverse impact ratio ≥ {fairness.get('air_threshold')} or not "
               f"significant, {', '.join(fairness.get('attributes') or {})})",
        ))
    else:
        facts.append(("fairness flags", "not tested (no protected attribute in the data)"))
    drift = d.get("drift")
    if drift:
        columns = drift.get("columns") or {}
        psis = [c.get("psi") for c in columns.values() if c.get("psi") is not None]
        worst = max(columns, key=lambda c: columns[c].get("psi") or 0.0) if psis else None
        facts.append((
            "drift",
            f"{drift.get('n_alert', 0)} alert, {drift.get('n_warn', 0)} warning of "
            f"{drift.get('n_columns', len(columns))} inputs"
            + (f"; highest PSI {max(psis):.3f} ({worst})" if psis else ""),
        ))
    else:
        facts.append(("drift", "no training baseline to compare with"))
    latency = d.get("latency")
    if latency:
        facts.append((
            "latency",
            f"one row p50 {latency.get('single_row_p50_ms', float('nan')):.2f} ms, "
            f"p95 {latency.get('single_row_p95_ms', float('nan')):.2f} ms; batch of "
            f"{latency.get('batch_rows')} rows {latency.get('batch_ms', float('nan')):.1f} ms",
        ))
    else:
        facts.append(("latency", "not measured (only the validation report measures it)"))
    return facts
