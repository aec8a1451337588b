"""HTML renderings of what the Workspace returns, for a bare variable at the end of a cell.

The views in ``workspace/views.py`` delegate their ``_repr_html_`` here; explanations and
fairness reports, defined elsewhere, are rendered through ``register_formatters``. Every piece
of text that came from a person or from data (names, findings, column names, categories,
messages) passes through ``html.escape`` before it is placed in markup: a dataset named
``<script>`` must show as text, never run.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "approval_html",
    "dataset_version_html",
    "deployment_html",
    "event_html",
    "explanation_html",
    "fairness_html",
    "job_html",
    "model_summary_html",
    "model_version_html",
    "register_formatters",
    "token_html",
    "user_html",
    "validation_html",
]

MAX_ROWS = 20  # rows of an explanation or items of a list shown before "and N more"
_KEY_METRICS = ("roc_auc", "gini", "ks", "brier", "accuracy", "log_loss", "rmse", "mae", "r2")
_STATUS_COLOURS = {
    "staging": "#8a6d00",
    "approved": "#1a7f37",
    "deployed": "#0969da",
    "passed": "#1a7f37",
    "succeeded": "#1a7f37",
    "active": "#0969da",
    "failed": "#cf222e",
    "rejected": "#cf222e",
    "retired": "#6e7781",
    "disabled": "#6e7781",
}


# --- building blocks: every function below returns markup whose text is already escaped -----


def _text(value: Any) -> str:
    """``value`` as escaped display text (None shows as a dash)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, datetime):
        return html.escape(f"{value:%Y-%m-%d %H:%M:%S} UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # whole numbers (amounts, counts) in full; measurements to four significant digits
        whole = value.is_integer() and abs(value) < 1e12
        return html.escape(f"{value:.0f}" if whole else f"{value:.4g}")
    return html.escape(str(value))


def _listing(items: Sequence[Any], limit: int = MAX_ROWS) -> str:
    if not items:
        return "—"
    shown = ", ".join(_text(i) for i in items[:limit])
    more = len(items) - limit
    return f"{shown} … and {more} more" if more > 0 else shown


def _short_hash(digest: str | None) -> str:
    if not digest:
        return "—"
    return f'<code title="{html.escape(digest)}">{html.escape(digest[:12])}…</code>'


def _badge(status: str | None) -> str:
    colour = _STATUS_COLOURS.get(str(status), "#57606a")
    return (
        f'<span style="border:1px solid {colour};color:{colour};border-radius:8px;'
        f'padding:0 6px;font-size:90%">{_text(status)}</span>'
    )


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of (label, markup) pairs; labels are escaped, markup is trusted."""
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em;font-weight:normal;opacity:.7">'
        f'{html.escape(label)}</th><td style="text-align:left">{markup}</td></tr>'
        for label, markup in rows
    )
    return f"<table>{body}</table>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of already-escaped cells under escaped column names."""
    head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:left">{cell}</td>' for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _details(summary: str, markup: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{markup}</details>"


def _card(kind: str, title: str, status: str | None, body: str) -> str:
    badge = f" {_badge(status)}" if status is not None else ""
    return (
        f'<div class="nexml-card"><div><span style="opacity:.7">{html.escape(kind)}</span> '
        f"<b>{_text(title)}</b>{badge}</div>{body}</div>"
    )


def _json(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


# --- views -----------------------------------------------------------------------------------


def dataset_version_html(dv: Any) -> str:
    """A DatasetVersion: ref, rows, columns, where it came from, hash; schema on demand."""
    columns: Mapping[str, Any] = (dv.schema or {}).get("columns", {})
    source = dict(dv.source or {})
    origin = source.get("uri") or source.get("parent") or source.get("table") or ""
    origin_text = _text(source.get("kind")) + (f" {_text(origin)}" if origin else "")
    if source.get("kind") == "split":
        origin_text += f" ({_text(source.get('part'))}, seed {_text(source.get('seed'))})"
    schema_rows = []
    for name, spec in columns.items():
        if "categories" in spec:
            values = _listing(spec["categories"], 8)
        else:
            values = f"{_text(spec.get('min'))} … {_text(spec.get('max'))}"
        schema_rows.append((_text(name), _text(spec.get("kind")), _text(spec.get("dtype")), values))
    body = _facts(
        [
            ("rows", _text(dv.row_count)),
            ("columns", f"{len(columns)}: {_listing(list(columns))}"),
            ("split", _text(dv.split)),
            ("source", origin_text),
            ("content sha256", _short_hash(dv.content_sha256)),
            ("registered", f"{_text(dv.created_at)} by {_text(dv.created_by)}"),
        ]
    )
    schema = _table(["column", "kind", "dtype", "values"], schema_rows)
    return _card("dataset", dv.ref, None, body + _details("schema", schema))


def model_version_html(mv: Any) -> str:
    """A ModelVersion: ref, status, author, what it learned from, champion and inputs."""
    lineage = dict(mv.lineage or {})
    training = dict(lineage.get("training") or {})
    datasets = [d.get("ref") for d in lineage.get("datasets") or []]
    rows = [
        ("author", _text(mv.author)),
        ("template", _text(mv.template)),
        ("problem", f"{_text(mv.problem_type)} on target {_text(mv.target)}"),
        ("flavour", _text(mv.flavour)),
        ("trained on", _listing(datasets)),
    ]
    if training:
        board = training.get("leaderboard") or []
        best = board[0].get("score_val") if board else None
        rows.append(
            (
                "champion",
                f"{_text(training.get('champion_name'))} ({_text(training.get('backend'))}; "
                f"CV {_text(training.get('metric'))} {_text(best)})",
            )
        )
        rows.append(("inputs", _listing(training.get("features") or [])))
        rows.append(("kept out (protected)", _listing(training.get("protected") or [])))
    if mv.metrics:
        rows.append(("metrics", _metric_line(mv.metrics)))
    rows += [
        ("artifact sha256", _short_hash(mv.artifact_sha256)),
        ("registered", _text(mv.created_at)),
    ]
    body = _facts(rows)
    board = training.get("leaderboard") or []
    if board:
        body += _details(
            "leaderboard",
            _table(
                ["model", "score_val", "fit_time_s"],
                [
                    (_text(r.get("model")), _text(r.get("score_val")), _text(r.get("fit_time_s")))
                    for r in board
                ],
            ),
        )
    return _card("model", mv.ref, mv.status, body)


def _metric_line(metrics: Mapping[str, Any]) -> str:
    keys = [k for k in _KEY_METRICS if k in metrics] or list(metrics)[:6]
    return ", ".join(f"{_text(k)} {_text(_as_float(metrics[k]))}" for k in keys)


def _as_float(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def validation_html(v: Any) -> str:
    """A Validation: what ran on what, its status, key metrics with intervals, and findings."""
    metrics = dict(v.metrics or {})
    details = dict(v.details or {})
    metric_rows = []
    for key in _KEY_METRICS:
        if key not in metrics:
            continue
        low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        interval = f"{_text(low)} – {_text(high)}" if low is not None and high is not None else ""
        metric_rows.append((_text(key), _text(_as_float(metrics[key])), interval))
    rows = [
        ("dataset", _text(v.dataset)),
        ("artifact sha256", _short_hash(v.artifact_sha256)),
        ("run by", _text(v.run_by)),
        ("requested by", _text(v.requested_by)),
        ("at", _text(v.created_at)),
    ]
    if "rows" in metrics:
        rows.insert(1, ("rows", _text(int(metrics["rows"]))))
    breaches = details.get("breaches") or []
    if breaches:
        rows.append(("threshold breaches", "<br>".join(_text(b) for b in breaches)))
    fairness = details.get("fairness") or {}
    if fairness:
        flagged = fairness.get("flagged") or {}
        rows.append(
            (
                "fairness flags",
                _listing([f"{a}: {', '.join(map(str, g))}" for a, g in flagged.items()])
                if flagged
                else "none",
            )
        )
    drift = details.get("drift") or {}
    if drift:
        rows.append(
            (
                "drift",
                f"{_text(drift.get('n_alert', 0))} alerts, "
                f"{_text(drift.get('n_warn', 0))} warnings over "
                f"{_text(drift.get('n_columns', 0))} inputs",
            )
        )
    body = _facts(rows) + _table(["metric", "value", "95% interval"], metric_rows)
    return _card("validation", f"#{v.id} of {v.ref}", v.status, body)


def approval_html(a: Any) -> str:
    body = _facts(
        [
            ("approver", _text(a.approver)),
            ("findings", _text(a.findings)),
            ("artifact sha256", _short_hash(a.artifact_sha256)),
            ("at", _text(a.created_at)),
        ]
    )
    return _card("decision on", a.ref, a.decision, body)


def deployment_html(d: Any) -> str:
    body = _facts(
        [
            ("serves", _text(d.model_ref)),
            ("size", _text(d.size)),
            ("by", _text(d.created_by)),
            ("updated", _text(d.updated_at)),
        ]
    )
    return _card("deployment", d.name, d.status, body)


def event_html(e: Any) -> str:
    body = _facts(
        [
            ("at", _text(e.at)),
            ("actor", f"{_text(e.actor)} ({_text(e.actor_role)})"),
            ("object", _text(e.object_ref)),
            ("hash", _short_hash(e.hash)),
        ]
    )
    return _card(f"event #{e.seq}", e.action, None, body + _details("data", _json(e.data)))


def job_html(j: Any) -> str:
    rows = [
        ("progress", _text(f"{j.progress:.0%}")),
        ("message", _text(j.message or None)),
        ("by", _text(j.created_by)),
        ("created", _text(j.created_at)),
        ("finished", _text(j.finished_at)),
    ]
    if j.error:
        rows.append(("error", f"<pre>{_text(j.error)}</pre>"))
    body = _facts(rows) + _details("parameters", _json(j.params))
    return _card(f"{j.kind} job", f"#{j.id}", j.status, body)


def user_html(u: Any) -> str:
    body = _facts(
        [("role", _text(u.role)), ("created", f"{_text(u.created_at)} by {_text(u.created_by)}")]
    )
    return _card("user", u.name, "disabled" if u.disabled else None, body)


def token_html(tok: Any) -> str:
    state = "revoked" if tok.revoked_at else None
    body = _facts(
        [
            ("user", _text(tok.user)),
            ("label", _text(tok.label)),
            ("created", _text(tok.created_at)),
            ("expires", _text(tok.expires_at)),
            ("revoked", _text(tok.revoked_at)),
        ]
    )
    return _card("token", tok.id, state, body)


def model_summary_html(m: Any) -> str:
    body = _facts(
        [
            ("template", _text(m.template)),
            ("versions", _text(m.versions)),
            ("latest", f"{_text(m.latest)} {_badge(m.latest_status)}"),
            ("deployed as", _listing(list(m.deployed))),
        ]
    )
    return _card("model", m.name, None, body)


# --- analysis results (defined outside the views; rendered through IPython's formatters) ------


def explanation_html(ex: Any) -> str:
    """An Explanation: each row's score, decision and adverse-action reasons (first rows)."""
    n = len(ex.scores)
    approved = [bool(a) for a in ex.approved]
    rows = []
    for i in range(min(n, MAX_ROWS)):
        reasons = ex.reasons[i] if i < len(ex.reasons) else []
        listed = "<br>".join(
            f'{_text(r.reason)} <span style="opacity:.6">({_text(r.feature)})</span>'
            for r in reasons
        )
        rows.append(
            (
                _text(ex.values.index[i]),
                _text(float(ex.scores[i])),
                "approved" if approved[i] else "<b>declined</b>",
                listed or "—",
            )
        )
    summary = (
        f"<div>{n} rows, {n - sum(approved)} declined (score below the cutoff "
        f"{_text(float(ex.cutoff))}); contributions by {_text(ex.method)}</div>"
    )
    more = f"<div>… and {n - MAX_ROWS} more rows</div>" if n > MAX_ROWS else ""
    table = _table(["row", "score", "decision", "principal reasons"], rows)
    return _card("explanation of", ex.ref, None, summary + table + more)


def fairness_html(report: Any) -> str:
    """A FairnessReport: per protected attribute, the control group, lowest AIR and flags."""
    rows = []
    for name, attribute in report.attributes.items():
        others = [
            g
            for g in attribute.groups
            if g["group"] != attribute.control and not _nan(g.get("air"))
        ]
        worst = min(others, key=lambda g: g["air"]) if others else None
        rows.append(
            (
                _text(name),
                _text(attribute.control),
                f"{_text(worst['air'])} ({_text(worst['group'])})" if worst else "—",
                _text(float(attribute.demographic_parity_difference)),
                _listing(attribute.flagged) if attribute.flagged else "none",
            )
        )
    summary = (
        f"<div>{_text(report.n)} rows; a group is flagged when its adverse impact ratio is below "
        f"{_text(float(report.air_threshold))} and significant at p &lt; "
        f"{_text(float(report.alpha))}</div>"
    )
    table = _table(
        ["attribute", "control group", "lowest AIR (group)", "parity difference", "flagged"], rows
    )
    return _card("fairness", "by protected attribute", None, summary + table)


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def register_formatters(shell: Any) -> None:
    """Render explanations and fairness reports as HTML in ``shell`` (an InteractiveShell).

    Call it once per shell (``%load_ext nexml_ext`` is the natural place); the views need no
    registration, they carry ``_repr_html_``. Registration is by name, so nothing is imported.
    """
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("nexml_ext.workspace.analysis", "Explanation", explanation_html)
    formatter.for_type_by_name("nexml_ext.ml.fairness", "FairnessReport", fairness_html)
