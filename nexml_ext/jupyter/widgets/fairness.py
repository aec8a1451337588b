"""Fairness by protected group: a table per attribute, adverse-impact flags highlighted."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from . import markup

COLUMNS = ["group", "n", "selection_rate", "air", "p_value", "test", "tpr", "fpr", "auc",
           "flagged"]
LABELS = {"selection_rate": "selection rate", "air": "AIR", "p_value": "p-value",
          "tpr": "TPR", "fpr": "FPR", "auc": "AUC"}


class FairnessView(widgets.VBox):
    """Attributes: ``summary`` (HTML), ``tables`` (attribute → HTML group table; flagged rows
    carry ``class="flagged"``), ``flagged`` (HTML list), ``flagged_groups`` (attribute → groups).
    """

    def __init__(self, report: Any) -> None:
        data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        self.report = data
        attributes: dict[str, Any] = data.get("attributes") or {}
        self.flagged_groups = {
            name: [g["group"] for g in a.get("groups", []) if g.get("flagged")]
            for name, a in attributes.items()
        }
        self.flagged_groups = {k: v for k, v in self.flagged_groups.items() if v}
        self.summary = widgets.HTML(
            f"{markup.cell(data.get('n'))} decisions; a group is flagged when its adverse impact "
            f"ratio is below <b>{markup.cell(data.get('air_threshold'))}</b> and the difference "
            f"is significant at α = {markup.cell(data.get('alpha'))}"
        )
        self.tables = {
            name: widgets.HTML(_attribute_table(name, a)) for name, a in attributes.items()
        }
        self.flagged = widgets.HTML(_flag_list(attributes))
        super().__init__([self.summary, widgets.HTML(markup.heading("Flagged groups")),
                          self.flagged, *self.tables.values()])


def _attribute_table(name: str, attribute: dict[str, Any]) -> str:
    control = attribute.get("control")
    rows = [
        {**g, "group": f"{g['group']} (control)" if g["group"] == control else g["group"]}
        for g in attribute.get("groups", [])
    ]
    parity = markup.cell(attribute.get("demographic_parity_difference"))
    odds = markup.cell(attribute.get("equalized_odds_difference"))
    gaps = f"demographic parity difference {parity}, equalized odds difference {odds}"
    return (
        markup.heading(f"{name}" + (" (banded)" if attribute.get("banded") else ""))
        + markup.table(COLUMNS, rows, labels=LABELS, flagged=lambda row: bool(row.get("flagged")))
        + f"<small>{gaps}</small>"
    )


def _flag_list(attributes: dict[str, Any]) -> str:
    items = [
        f"<li><b>{markup.cell(name)}</b>: {markup.cell(g['group'])} — AIR "
        f"{markup.cell(g.get('air'), 3)}, p = {markup.cell(g.get('p_value'), 3)} "
        f"(control {markup.cell(a.get('control'))})</li>"
        for name, a in attributes.items()
        for g in a.get("groups", [])
        if g.get("flagged")
    ]
    return f"<ul>{''.join(items)}</ul>" if items else "<i>no group flagged</i>"


def fairness_view(report: Any) -> FairnessView:
    """Group tables and adverse-impact flags of a ``Workspace.fairness`` result (a
    FairnessReport, or its ``to_dict()`` as stored in the analysis job's result)."""
    return FairnessView(report)
