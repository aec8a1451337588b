"""Drift against the training baseline: PSI bars per feature coloured by status, flags listed."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from . import charts, markup

COLUMNS = ["column", "kind", "psi", "status", "test", "statistic", "p_value", "drift_detected",
           "missing_rate_change", "note"]
LABELS = {"psi": "PSI", "p_value": "p-value", "drift_detected": "test detects drift",
          "missing_rate_change": "missing-rate change"}


class DriftView(widgets.VBox):
    """Attributes: ``summary`` (HTML), ``chart`` (Image: PSI per feature, coloured ok / warn /
    alert, thresholds dashed), ``table`` (HTML; flagged rows carry ``class="flagged"``),
    ``flagged`` (HTML list), ``flagged_features`` (names at warn or alert, worst first)."""

    def __init__(self, report: Any) -> None:
        data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        self.report = data
        columns: dict[str, Any] = data.get("columns") or {}
        settings = data.get("settings") or {}
        ranked = sorted(columns.values(), key=lambda c: -(c.get("psi") or 0.0))
        self.flagged_features = [
            c["column"] for c in ranked if c.get("status") in ("warn", "alert")
        ]
        self.summary = widgets.HTML(
            f"{markup.cell(data.get('rows'))} rows against a baseline of "
            f"{markup.cell(data.get('baseline_rows'))}; {markup.cell(data.get('n_alert'))} "
            f"features at alert, {markup.cell(data.get('n_warn'))} at warning; dataset drift: "
            f"<b>{markup.cell(bool(data.get('dataset_drift')))}</b>"
        )
        self.chart = charts.image(_figure(ranked, settings))
        self.table = widgets.HTML(markup.table(
            COLUMNS, ranked, labels=LABELS,
            flagged=lambda row: row.get("status") in ("warn", "alert"),
        ))
        items = "".join(
            f"<li><b>{markup.cell(c['column'])}</b>: {markup.cell(c['status'])}, PSI "
            f"{markup.cell(c.get('psi'), 3)}</li>"
            for c in ranked if c["column"] in self.flagged_features
        )
        self.flagged = widgets.HTML(f"<ul>{items}</ul>" if items else "<i>no feature drifted</i>")
        super().__init__([self.summary, widgets.HTML(markup.heading("Flagged features")),
                          self.flagged, self.chart, self.table])


def _figure(ranked: list[dict[str, Any]], settings: dict[str, Any]):  # type: ignore[no-untyped-def]
    lines = []
    if settings.get("psi_warn") is not None:
        lines.append((float(settings["psi_warn"]), charts.STATUS_COLOURS["warn"], "warning"))
    if settings.get("psi_alert") is not None:
        lines.append((float(settings["psi_alert"]), charts.STATUS_COLOURS["alert"], "alert"))
    return charts.barh(
        [c["column"] for c in ranked],
        [c.get("psi") or 0.0 for c in ranked],
        title="Population stability index per feature",
        xlabel="PSI",
        colours=[charts.STATUS_COLOURS.get(c.get("status"), charts.BAR_COLOUR) for c in ranked],
        lines=lines,
    )


def drift_view(report: Any) -> DriftView:
    """PSI bars, a per-feature table and the flagged features of a ``Workspace.drift`` result
    (a DriftReport, or its ``to_dict()`` as stored in the analysis job's result)."""
    return DriftView(report)
