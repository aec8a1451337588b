"""The AutoML leaderboard: a table sortable by any column and a bar chart of validation scores."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import pandas as pd

from . import charts, markup

COLUMNS = ["model", "score_val", "fit_time_s", "predict_time_per_row_s"]
CHAMPION_STYLE = "background:#fff4d6;font-weight:bold"
LABELS = {
    "model": "model",
    "score_val": "validation score",
    "fit_time_s": "fit time (s)",
    "predict_time_per_row_s": "predict time per row (s)",
}


class Leaderboard(widgets.VBox):
    """Every candidate of a TrainingRun; the champion is highlighted.

    Attributes: ``sort_by`` (Dropdown of columns), ``ascending`` (ToggleButton), ``table``
    (HTML), ``chart`` (Image, PNG), ``summary`` (HTML). ``order`` is the model names as shown.
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        self.frame = pd.DataFrame(run.leaderboard)[COLUMNS].reset_index(drop=True)
        self.champion = str(run.champion_name)
        self.sort_by = widgets.Dropdown(
            options=[(LABELS[c], c) for c in COLUMNS], value="score_val", description="Sort by"
        )
        self.ascending = widgets.ToggleButton(value=False, description="ascending",
                                              tooltip="sort ascending instead of descending")
        self.table = widgets.HTML()
        self.summary = widgets.HTML(
            f"<b>{markup.cell(run.backend)} {markup.cell(run.problem_type)}</b>, metric "
            f"<b>{markup.cell(run.metric)}</b> (higher is better), {len(self.frame)} candidates; "
            f"champion <b>{markup.cell(self.champion)}</b>"
        )
        self.chart = charts.image(self._figure())
        self.sort_by.observe(self._render, names="value")
        self.ascending.observe(self._render, names="value")
        self._render()
        controls = widgets.HBox([self.sort_by, self.ascending])
        super().__init__([self.summary, controls, self.table, self.chart])

    @property
    def order(self) -> list[str]:
        return list(self._sorted()["model"])

    def _sorted(self) -> pd.DataFrame:
        return self.frame.sort_values(
            self.sort_by.value, ascending=self.ascending.value, kind="stable", na_position="last"
        )

    def _render(self, _change: Any = None) -> None:
        self.table.value = markup.table(
            COLUMNS,
            self._sorted().to_dict(orient="records"),
            labels=LABELS,
            flagged=lambda row: row["model"] == self.champion,
            mark="champion",
            mark_style=CHAMPION_STYLE,
        )

    def _figure(self):  # type: ignore[no-untyped-def]
        ranked = self.frame.sort_values("score_val", ascending=False, kind="stable")
        colours = [
            charts.HIGHLIGHT_COLOUR if m == self.champion else charts.BAR_COLOUR
            for m in ranked["model"]
        ]
        return charts.barh(
            list(ranked["model"]),
            list(ranked["score_val"]),
            title="Validation score by candidate (champion highlighted)",
            xlabel=str(self.run.metric),
            colours=colours,
        )


def leaderboard_widget(run: Any) -> Leaderboard:
    """A sortable leaderboard and score chart for a TrainingRun (``nexml_ext.ml.automl.train``
    or ``Workspace.train``). Changing ``sort_by.value`` or ``ascending.value`` re-renders."""
    return Leaderboard(run)
