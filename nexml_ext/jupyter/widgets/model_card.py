"""The model card: one version's status, metrics, lineage, validations and decisions.

Approve and reject go to ``Workspace.approve`` / ``reject``; the card holds no rule about who may
decide or when. A refusal (wrong role, own version, no validation, incomplete compliance, no
findings) is shown in ``message`` and the card stays as it was.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from . import markup

STATUS_COLOURS = {
    "staging": "#8a6d00",
    "approved": "#1a7f37",
    "deployed": "#0b5cad",
    "rejected": "#b42318",
    "retired": "#555",
}
HEADLINE_METRICS = ("roc_auc", "gini", "ks", "accuracy", "brier", "log_loss", "rmse", "r2")


class ModelCard(widgets.VBox):
    """A version's card. Attributes: ``status`` (HTML), ``summary``, ``metrics``, ``lineage``,
    ``validations``, ``approvals`` (HTML), ``findings`` (Textarea), ``approve_button``,
    ``reject_button``, ``message`` (:class:`~.markup.Message`). ``refresh()`` re-reads it all.
    """

    def __init__(self, ws: Any, ref: str) -> None:
        self.ws = ws
        self.ref = ref
        self.title = widgets.HTML(markup.heading(f"Model card {ref}", 3))
        self.status = widgets.HTML()
        self.summary = widgets.HTML()
        self.metrics = widgets.HTML()
        self.lineage = widgets.HTML()
        self.validations = widgets.HTML()
        self.approvals = widgets.HTML()
        self.findings = widgets.Textarea(
            placeholder="Findings: what you checked and what you concluded (required)",
            layout=widgets.Layout(width="100%", height="80px"),
        )
        self.approve_button = widgets.Button(description="Approve", button_style="success",
                                             icon="check")
        self.reject_button = widgets.Button(description="Reject", button_style="danger",
                                            icon="times")
        self.message = markup.Message()
        self.approve_button.on_click(lambda _: self._decide("approve"))
        self.reject_button.on_click(lambda _: self._decide("reject"))
        self.refresh()
        decision = widgets.VBox([
            widgets.HTML(markup.heading("Decision")),
            self.findings,
            widgets.HBox([self.approve_button, self.reject_button]),
            self.message,
        ])
        super().__init__([
            self.title, self.status, self.summary,
            widgets.HTML(markup.heading("Metrics")), self.metrics,
            widgets.HTML(markup.heading("Lineage")), self.lineage,
            widgets.HTML(markup.heading("Platform validations")), self.validations,
            widgets.HTML(markup.heading("Approvals")), self.approvals,
            decision,
        ])

    def refresh(self) -> None:
        """Re-read the version, its validations and approvals from the Workspace."""
        version = self.ws.version(self.ref)
        validations = self.ws.validations(self.ref)
        approvals = self.ws.approvals(self.ref)
        colour = STATUS_COLOURS.get(version.status, "#555")
        self.status.value = (
            f'status: <b style="color:{colour}">{markup.cell(version.status)}</b>'
        )
        self.summary.value = markup.definitions([
            ("author", version.author),
            ("template", version.template),
            ("flavour", version.flavour),
            ("problem type", version.problem_type),
            ("target", version.target),
            ("registered", f"{version.created_at:%Y-%m-%d %H:%M} UTC"),
            ("artifact SHA-256", version.artifact_sha256),
        ])
        self.metrics.value = _metrics_table(version, validations)
        self.lineage.value = _lineage(version.lineage or {})
        self.validations.value = markup.table(
            ["id", "dataset", "status", "roc_auc", "run_by", "requested_by", "when", "artifact"],
            [
                {
                    "id": v.id, "dataset": v.dataset, "status": v.status,
                    "roc_auc": (v.metrics or {}).get("roc_auc"), "run_by": v.run_by,
                    "requested_by": v.requested_by, "when": f"{v.created_at:%Y-%m-%d %H:%M}",
                    "artifact": "this artifact" if v.artifact_sha256 == version.artifact_sha256
                    else f"other ({v.artifact_sha256[:12]}…)",
                }
                for v in validations
            ],
            flagged=lambda row: row["status"] == "failed",
        )
        self.approvals.value = markup.table(
            ["decision", "approver", "when", "findings"],
            [
                {"decision": a.decision, "approver": a.approver,
                 "when": f"{a.created_at:%Y-%m-%d %H:%M}", "findings": a.findings}
                for a in approvals
            ],
        )

    def _decide(self, move: str) -> None:
        action = self.ws.approve if move == "approve" else self.ws.reject
        done, approval = self.message.attempt(
            lambda: action(self.ref, findings=self.findings.value)
        )
        if done:
            self.refresh()
            self.findings.value = ""
            self.message.ok(f"{self.ref} {approval.decision} by {approval.approver}")


def _metrics_table(version: Any, validations: list[Any]) -> str:
    latest = next(
        (v for v in reversed(validations) if v.artifact_sha256 == version.artifact_sha256), None
    )
    measured = (latest.metrics or {}) if latest else {}
    registered = version.metrics or {}
    names = [m for m in HEADLINE_METRICS if m in measured or m in registered]
    names += sorted(
        m for m in {**registered, **measured}
        if m not in names and not m.endswith(("_ci_low", "_ci_high"))
    )
    source = f"validation {latest.id}" if latest else "validation"
    rows = [
        {
            "metric": name,
            "registered": registered.get(name),
            source: measured.get(name),
            "95% interval": _interval(measured, name),
        }
        for name in names
    ]
    return markup.table(["metric", "registered", source, "95% interval"], rows)


def _interval(metrics: dict[str, Any], name: str) -> str | None:
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None:
        return None
    return f"{low:.3f} – {high:.3f}"


def _lineage(lineage: dict[str, Any]) -> str:
    datasets = markup.table(
        ["ref", "rows", "sha256"],
        [
            {"ref": d.get("ref"), "rows": d.get("rows"), "sha256": str(d.get("sha256", ""))[:16]}
            for d in lineage.get("datasets") or []
        ],
    )
    training = lineage.get("training") or {}
    if not training:
        return datasets
    facts = markup.definitions([
        ("training job", training.get("job")),
        ("backend", training.get("backend")),
        ("champion", training.get("champion_name")),
        ("metric", training.get("metric")),
        ("seed", training.get("seed")),
        ("features", training.get("features")),
        ("excluded (protected)", training.get("excluded")),
    ])
    return datasets + facts


def model_card(ws: Any, ref: str) -> ModelCard:
    """The card of version ``ref`` (``NAME:VERSION``) as ``ws``'s principal sees it.

    The decision box is always there: the Workspace decides whether this principal may approve
    or reject, and its refusal is shown in ``message``. Raises NotFound or PermissionDenied if
    the version cannot be read.
    """
    return ModelCard(ws, ref)
