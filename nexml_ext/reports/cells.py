"""What report templates display: escaped HTML tables, banners, figures and the summary.

Every value that reaches the page goes through :func:`html.escape` here (compliance fields,
findings, user names, event references...), so text a person typed is shown as text, never
run as markup. Templates call these with what the Workspace returned and nothing else.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .execute import SUMMARY_MIME

#: The most rows one table shows; the rest is counted, not listed.
MAX_ROWS = 500


class Html:
    """A piece of HTML for IPython's display (``text/html``), with a plain-text fallback."""

    def __init__(self, markup: str, text: str = "") -> None:
        self.markup = markup
        self.text = text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text or "(HTML)"


def esc(value: Any) -> str:
    """``value`` as escaped text (None as an empty cell; lists and dicts as compact JSON)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    if isinstance(value, Mapping | list | tuple):
        return html.escape(json.dumps(value, default=str, sort_keys=True, ensure_ascii=False))
    return html.escape(str(value))


def cell_html(value: Any) -> str:
    """A table cell's content: a list of records as a nested table, anything else escaped."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        keys: list[str] = []
        for item in value:
            keys += [k for k in item if k not in keys]
        head = "".join(f"<th>{esc(k)}</th>" for k in keys)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(item.get(k))}</td>" for k in keys) + "</tr>"
            for item in value[:MAX_ROWS]
        )
        return f'<table class="nexml-table nexml-nested"><tr>{head}</tr>{body}</table>'
    return esc(value)


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def show(*pieces: Html) -> None:
    from IPython.display import display

    for piece in pieces:
        display(piece)


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    numeric: Iterable[str] = (),
    hashes: Iterable[str] = (),
    empty: str = "None recorded.",
    css: str = "",
) -> Html:
    """An HTML table of ``rows`` with ``columns`` as (key, heading); every cell escaped."""
    if not rows:
        return paragraph(empty)
    numeric, hashes = set(numeric), set(hashes)
    head = "".join(f"<th>{esc(label)}</th>" for _, label in columns)
    body = []
    for row in rows[:MAX_ROWS]:
        cells = []
        for key, _ in columns:
            cls = "num" if key in numeric else "nexml-hash" if key in hashes else ""
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{cell_html(row.get(key))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(rows) > MAX_ROWS:
        more = f"<p>… and {len(rows) - MAX_ROWS} more, not listed.</p>"
    classes = f"nexml-table {css}".strip()
    markup = (
        f'<table class="{classes}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )
    return Html(markup, f"table of {len(rows)} rows")


def facts(pairs: Sequence[tuple[str, Any]], *, hashes: Iterable[str] = ()) -> Html:
    """A two-column table of labels and values."""
    hashes = set(hashes)
    hash_cell = ' class="nexml-hash"'
    rows = "".join(
        f"<tr><th>{esc(label)}</th>"
        f"<td{hash_cell if label in hashes else ''}>{esc(value)}</td></tr>"
        for label, value in pairs
    )
    return Html(f'<table class="nexml-table nexml-facts-table">{rows}</table>')


def paragraph(text: str, *, css: str = "") -> Html:
    attr = f' class="{esc(css)}"' if css else ""
    return Html(f"<p{attr}>{esc(text)}</p>", text)


def text_block(text: str) -> Html:
    """Free text a person wrote, line breaks kept, escaped."""
    return Html(f'<div class="nexml-text">{esc(text)}</div>', text)


def metric(label: str, value: Any, note: str = "") -> Html:
    """One key number, large (e.g. the compliance score)."""
    extra = f"<div>{esc(note)}</div>" if note else ""
    return Html(
        f'<div class="nexml-metric-box"><div>{esc(label)}</div>'
        f'<div class="nexml-metric" data-nexml-metric="{esc(label)}">{esc(value)}</div>'
        f"{extra}</div>",
        f"{label}: {value}",
    )


def banner(ok: bool, title: str, lines: Sequence[str] = ()) -> Html:
    """A green (ok) or red (failed) box with a title and explanatory lines."""
    css = "nexml-banner-ok" if ok else "nexml-banner-bad"
    role = "" if ok else ' role="alert"'
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    body = f"<ul>{items}</ul>" if items else ""
    return Html(f'<div class="{css}"{role}><strong>{esc(title)}</strong>{body}</div>', title)


def heads_table(heads: Mapping[str, Mapping[str, Any]]) -> Html:
    """Each chain's head at the time the report was made: chain, last record, its hash."""
    rows = [
        {"chain": chain, "seq": head["seq"], "hash": head["hash"]}
        for chain, head in sorted(heads.items())
    ]
    return table(
        rows,
        [("chain", "Chain"), ("seq", "Last record"), ("hash", "Head hash (SHA-256)")],
        numeric={"seq"},
        hashes={"hash"},
        css="nexml-heads",
    )


def verification_rows(result: Any) -> list[dict[str, Any]]:
    """``ws.audit.verify()`` as plain rows (also what the summary carries)."""
    return [
        {
            "chain": c.chain,
            "ok": bool(c.ok),
            "count": c.count,
            "head": c.head,
            "first_bad_seq": c.first_bad_seq,
            "problem": c.problem,
        }
        for c in result.chains
    ]


def verification(result: Any) -> Html:
    """The verification of every chain: a red banner naming each broken chain and record, or a
    green one; then one row per chain."""
    rows = verification_rows(result)
    broken = [r for r in rows if not r["ok"]]
    if broken:
        top = banner(
            False,
            "Audit-chain verification FAILED: the recorded history was altered",
            [f"chain {r['chain']}: broken at record {r['first_bad_seq']}: {r['problem']}"
             for r in broken],
        )
    else:
        top = banner(
            True,
            "Audit-chain verification passed",
            [f"{len(rows)} chains, {sum(r['count'] for r in rows)} records recomputed"],
        )
    shown = [
        {**r, "result": "verified" if r["ok"] else f"BROKEN at record {r['first_bad_seq']}"}
        for r in rows
    ]
    listing = table(
        shown,
        [("chain", "Chain"), ("count", "Records verified"), ("result", "Result"),
         ("problem", "Problem")],
        numeric={"count"},
        css="nexml-verification",
    )
    return Html(top.markup + listing.markup, top.text)


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    horizontal: bool = False,
) -> None:
    """Display a grouped bar chart (matplotlib), inlined as a PNG with the title as alt text."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not labels:
        return
    n = len(series)
    positions = np.arange(len(labels))
    width = 0.8 / max(n, 1)
    height = max(3.0, 0.35 * len(labels) + 1.5) if horizontal else 3.6
    fig, ax = plt.subplots(figsize=(8, height))
    for i, (name, values) in enumerate(series.items()):
        offset = positions + (i - (n - 1) / 2) * width
        if horizontal:
            ax.barh(offset, values, height=width, label=name)
        else:
            ax.bar(offset, values, width=width, label=name)
    if horizontal:
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.set_xticks(positions, labels, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    if n > 1:
        ax.legend()
    fig.tight_layout()
    show(figure(fig, title))
    plt.close(fig)


def figure(fig: Any, alt: str) -> Html:
    """A matplotlib figure as an inline PNG (a data: URL: nothing is fetched) with alt text."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Html(
        f'<img class="nexml-figure" alt="{esc(alt)}" src="data:image/png;base64,{data}">', alt
    )


def summary(data: Mapping[str, Any]) -> None:
    """Display the run's machine-readable summary (read back by the platform, never rendered)."""
    from IPython.display import display

    display({SUMMARY_MIME: json.loads(json.dumps(data, default=str))}, raw=True)
