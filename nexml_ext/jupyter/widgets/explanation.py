"""Why a row got its score: a waterfall of its contributions, its reasons, global importance.

Reads a ``Workspace.explain`` result (or an ``ml.explain.LocalExplanation``); computes nothing
but sums of the contributions it is given.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ...errors import InvalidInput
from . import charts, markup

MAX_BARS = 12  # beyond this many features the smallest are summed into one bar


class ExplanationView(widgets.VBox):
    """Attributes: ``row`` (BoundedIntText; changing it re-renders), ``summary`` (HTML),
    ``chart`` (Image, the waterfall), ``reasons`` (HTML), ``importance`` (Image or None)."""

    def __init__(self, explanation: Any, row: int = 0,
                 importance: pd.DataFrame | None = None) -> None:
        self.explanation = explanation
        rows = len(explanation.values)
        if not 0 <= row < rows:
            raise InvalidInput(f"row {row} is out of range for {rows} explained rows")
        self.row = widgets.BoundedIntText(value=row, min=0, max=rows - 1, description="Row")
        self.summary = widgets.HTML()
        self.chart = widgets.Image(format="png")
        self.reasons = widgets.HTML()
        self.importance = charts.image(_importance_figure(importance)) if (
            importance is not None) else None
        self.row.observe(lambda _: self._render(), names="value")
        self._render()
        parts: list[widgets.Widget] = [self.row, self.summary, self.chart,
                                       widgets.HTML(markup.heading("Reasons")), self.reasons]
        if self.importance is not None:
            parts += [widgets.HTML(markup.heading("Global importance")), self.importance]
        super().__init__(parts)

    def _render(self) -> None:
        e, row = self.explanation, self.row.value
        contributions = e.values.iloc[row].astype(float)
        base = float(np.asarray(e.base_values)[row])
        margin = base + float(contributions.sum())
        space = getattr(e, "space", "log_odds")
        facts = [("row", e.values.index[row]), ("method", e.method), ("space", space),
                 ("base value", base), ("model output (margin)", margin)]
        if getattr(e, "scores", None) is not None:
            score, cutoff = float(np.asarray(e.scores)[row]), float(e.cutoff)
            decision = "approved" if bool(np.asarray(e.approved)[row]) else "declined"
            facts += [("score", score), ("cutoff", cutoff), ("decision", decision)]
        self.summary.value = markup.definitions(facts)
        self.chart.value = charts.png(_waterfall(contributions, base, space))
        reasons = list(e.reasons[row]) if getattr(e, "reasons", None) is not None else []
        if reasons:
            items = "".join(
                f"<li><b>{markup.cell(r.reason)}</b> ({markup.cell(r.feature)}, "
                f"{markup.cell(r.contribution, 3)})</li>"
                for r in reasons
            )
            self.reasons.value = f"<ol>{items}</ol>"
        else:
            self.reasons.value = "<i>no adverse-action reasons for this row</i>"


def _waterfall(contributions: pd.Series, base: float, space: str):  # type: ignore[no-untyped-def]
    ordered = contributions.reindex(contributions.abs().sort_values(ascending=False).index)
    if len(ordered) > MAX_BARS:
        rest = ordered.iloc[MAX_BARS - 1:]
        ordered = pd.concat([ordered.iloc[: MAX_BARS - 1],
                             pd.Series({f"{len(rest)} other features": rest.sum()})])
    fig = charts.figure(len(ordered))
    ax = fig.add_subplot()
    start = base
    positions = list(range(len(ordered)))[::-1]
    for y, value in zip(positions, ordered.to_numpy(), strict=True):
        colour = charts.UP_COLOUR if value >= 0 else charts.DOWN_COLOUR
        ax.barh(y, value, left=start, color=colour)
        start += value
    ax.set_yticks(positions, [charts.plain(name) for name in ordered.index])
    ax.axvline(base, color="#888", linestyle=":", linewidth=1, label=f"base {base:.3f}")
    ax.axvline(start, color="#222", linestyle="--", linewidth=1, label=f"output {start:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Contributions to this row's score")
    ax.set_xlabel(charts.plain(space).replace("_", "-"))
    return fig


def _importance_figure(importance: pd.DataFrame):  # type: ignore[no-untyped-def]
    if "feature" not in importance.columns:
        raise InvalidInput("importance needs a 'feature' column (see ml.explain.global_importance)")
    column = "mean_abs_shap" if "mean_abs_shap" in importance.columns else next(
        (c for c in importance.columns if c != "feature"
         and pd.api.types.is_numeric_dtype(importance[c])), None)
    if column is None:
        raise InvalidInput("importance needs a numeric column such as 'mean_abs_shap'")
    top = importance.sort_values(column, ascending=False).head(20)
    return charts.barh(list(top["feature"]), list(top[column]),
                       title="Global importance", xlabel=column.replace("_", " "))


def explanation_view(explanation: Any, row: int = 0,
                     importance: pd.DataFrame | None = None) -> ExplanationView:
    """One row's waterfall chart and reasons from ``Workspace.explain``'s result, plus a bar
    chart of ``importance`` (``ml.explain.global_importance``'s table) when given.
    Raises InvalidInput for a row out of range or an importance table without features."""
    return ExplanationView(explanation, row, importance)
