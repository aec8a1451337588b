"""HTML pieces every widget shares: escaped tables and cells, and the message line.

Every value that reaches HTML goes through :func:`cell` (``html.escape``): model names, findings,
compliance text and error messages are user-provided, and a notebook renders HTML as-is.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from ...errors import NexmlError

FLAG_STYLE = "background:#fde2e1"
_TABLE_STYLE = "border-collapse:collapse;font-size:12px"
_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def cell(value: Any, digits: int = 4) -> str:
    """One value as escaped HTML text: numbers to ``digits`` significant figures, None and NaN
    as a dash, lists joined by commas."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v, digits) for v in value)
    return html.escape(str(value))


def table(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    labels: Mapping[str, str] | None = None,
    flagged: Callable[[Mapping[str, Any]], bool] | None = None,
    mark: str = "flagged",
    mark_style: str = FLAG_STYLE,
) -> str:
    """An HTML table of ``rows`` (mappings) over ``columns``; rows where ``flagged(row)`` is true
    get ``class=mark`` and ``mark_style`` (a highlighted background)."""
    labels = labels or {}
    head = "".join(
        f'<th style="{_CELL_STYLE}">{html.escape(labels.get(c, c))}</th>' for c in columns
    )
    body = []
    for row in rows:
        marked = flagged is not None and flagged(row)
        attrs = f' class="{mark}" style="{mark_style}"' if marked else ""
        cells = "".join(f'<td style="{_CELL_STYLE}">{cell(row.get(c))}</td>' for c in columns)
        body.append(f"<tr{attrs}>{cells}</tr>")
    if not body:
        span = max(len(columns), 1)
        body.append(f'<tr><td colspan="{span}" style="{_CELL_STYLE}"><i>none</i></td></tr>')
    return (
        f'<table style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def definitions(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column label/value list as an HTML table (labels and values escaped)."""
    rows = "".join(
        f'<tr><th style="{_CELL_STYLE}">{html.escape(label)}</th>'
        f'<td style="{_CELL_STYLE}">{cell(value)}</td></tr>'
        for label, value in items
    )
    return f'<table style="{_TABLE_STYLE}">{rows}</table>'


def heading(text: str, level: int = 4) -> str:
    return f"<h{level} style='margin:8px 0 4px'>{html.escape(text)}</h{level}>"


class Message(widgets.HTML):
    """One line telling the user what just happened: done, or refused and why.

    ``text`` holds the plain message (tests and magics read it); ``kind`` is "", "ok" or
    "error". The HTML is escaped, since refusals quote what the user typed.
    """

    _COLOURS = {"ok": "#1a7f37", "error": "#b42318", "": "#555"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = ""
        self.kind = ""

    def show(self, text: str, kind: str = "") -> None:
        self.text, self.kind = text, kind
        colour = self._COLOURS.get(kind, self._COLOURS[""])
        self.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""

    def ok(self, text: str) -> None:
        self.show(text, "ok")

    def refused(self, error: BaseException) -> None:
        self.show(str(error), "error")

    def attempt(self, action: Callable[[], Any]) -> tuple[bool, Any]:
        """Run ``action``; a NexmlError (the Workspace refusing) is shown, not raised.

        Returns (True, result) or (False, None). Other exceptions are bugs and propagate.
        """
        try:
            return True, action()
        except NexmlError as exc:
            self.refused(exc)
            return False, None
