"""The ``monitor`` job kind: a worker runs a deployment's monitor (``ws.run_monitor``).

Parameters: ``deployment`` (required), ``window`` (daily|weekly|monthly, default the monitor's),
``until`` and ``since`` (a date or ISO date-time). Submitting it needs ``monitor.run``. A
schedule passes ``until={fire_date}`` so a late or caught-up fire judges the windows it was due
for, e.g. every Monday at 06:00 UTC::

    nexml schedule add monitor-credit --cron "0 6 * * 1" --kind monitor \\
        --param deployment=credit --param until={fire_date}
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..jobs.context import JobContext
from ..jobs.registry import check_params, register_kind
from . import windows

_PARAMS = {"deployment", "window", "until", "since"}


def _check(ws: Any, params: dict[str, Any]) -> dict[str, Any]:
    check_params("monitor", params, _PARAMS)
    deployment = params.get("deployment")
    if not isinstance(deployment, str) or not deployment:
        raise InvalidInput("monitor job: missing parameter deployment (deployment=NAME)")
    ws.monitor(deployment)  # NotFound now (not enrolled) rather than in the worker
    clean: dict[str, Any] = {"deployment": deployment}
    if params.get("window") is not None:
        clean["window"] = windows.check_kind(params["window"])
    for key in ("until", "since"):
        if params.get(key) is not None:
            moment = windows.parse_moment(params[key], f"monitor job: {key}")
            clean[key] = moment.isoformat() if moment else None
    return clean


def monitor(ctx: JobContext) -> dict[str, Any]:
    """The platform runs a deployment's monitor over its complete windows."""
    p = ctx.params
    ctx.progress(0.05, f"monitoring {p['deployment']}")
    runs = ctx.workspace.run_monitor(
        p["deployment"], window=p.get("window"), until=p.get("until"), since=p.get("since"),
        job_id=ctx.id,
    )
    for run in runs:
        ctx.log(
            f"{run.window} window {run.window_start:%Y-%m-%d}: {run.rows} decisions, "
            f"{run.outcomes} outcomes, {run.breaches} breaches, alerts {list(run.alerts)}"
        )
    if not runs:
        ctx.log("no complete window to evaluate")
    return {
        "deployment": p["deployment"],
        "runs": [r.id for r in runs],
        "windows": [r.window_start.isoformat() for r in runs],
        "breaches": sum(r.breaches for r in runs),
        "alerts": sorted({a for r in runs for a in r.alerts}),
    }


register_kind(
    "monitor", monitor, action="monitor.run", check=_check, subject="deployment", max_attempts=2
)
