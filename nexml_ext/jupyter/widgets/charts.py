"""Static charts for the widgets: matplotlib figures drawn with Agg, shown as PNG images.

Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas directly, never through
pyplot: no global state changes in the user's notebook, no figure leaks, and safe from the jobs
view's refresh thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STATUS_COLOURS = {"ok": "#4c9a2a", "warn": "#e0a100", "alert": "#c0392b"}
BAR_COLOUR = "#4a78b5"
HIGHLIGHT_COLOUR = "#e07b00"
UP_COLOUR, DOWN_COLOUR = "#c0392b", "#2a7ab0"


def plain(text: object) -> str:
    """``text`` for a chart label, with ``$`` escaped so that matplotlib does not read a column
    name such as ``$income$`` as mathtext."""
    return str(text).replace("$", r"\$")


def figure(rows: int) -> Figure:
    """A figure sized for a horizontal bar chart of ``rows`` bars."""
    fig = Figure(figsize=(7, max(2.0, 0.35 * rows + 1.2)), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def image(fig: Figure) -> widgets.Image:
    return widgets.Image(value=png(fig), format="png")


def barh(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    colours: Sequence[str] | None = None,
    lines: Sequence[tuple[float, str, str]] = (),
) -> Figure:
    """Horizontal bars, first label on top; ``lines`` are (x, colour, label) reference lines."""
    fig = figure(len(labels))
    ax = fig.add_subplot()
    positions = list(range(len(labels)))[::-1]
    ax.barh(positions, values, color=list(colours) if colours else BAR_COLOUR)
    ax.set_yticks(positions, [plain(label) for label in labels])
    for x, colour, label in lines:
        ax.axvline(x, color=colour, linestyle="--", linewidth=1, label=label)
    if lines:
        ax.legend(loc="lower right", fontsize=8)
    if all(float(v).is_integer() for v in values):  # counts: no "0.25 versions" ticks
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(plain(title))
    ax.set_xlabel(plain(xlabel))
    return fig
