"""The ``retrain`` job kind: retrain a deployed model into staging (see
``nexml_ext.workspace.retraining``).

Parameters: ``deployment`` (required), ``source`` (the labelled data: a path or URL, or
``{"uri", "table" | "query", "format"}``; default: the source configured for the deployment's
monitor) and ``time_limit`` (AutoML seconds; default the champion's). Submitting needs
``model.retrain`` on the deployment's champion (managers, the platform — a monitor's alert — and
data scientists for their own models); the job runs as the platform and the submitter becomes
the challenger's author.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..workspace.retraining import check_time_limit, source_spec
from .context import JobContext
from .registry import check_params, register_kind

_PARAMS = {"deployment", "source", "time_limit"}


def _check(ws: Any, params: dict[str, Any]) -> dict[str, Any]:
    check_params("retrain", params, _PARAMS)
    deployment = params.get("deployment")
    if not isinstance(deployment, str) or not deployment:
        raise InvalidInput("retrain job: missing parameter deployment (the deployment to retrain)")
    ws._champion_settings(deployment)  # NotFound / InvalidTransition now, not in the worker
    source = params.get("source")
    if source is None:
        source = ws.configured_source(deployment)
        if source is None:
            raise InvalidInput(
                f"retrain job: no source given and none configured for deployment "
                f"{deployment!r}: pass the labelled data (source=PATH|URL)"
            )
    checked: dict[str, Any] = {"deployment": deployment, "source": source_spec(source)}
    if params.get("time_limit") is not None:
        checked["time_limit"] = check_time_limit(params["time_limit"])
    return checked


def _champion_author(ws: Any, params: dict[str, Any]) -> str:
    return ws._champion_settings(params["deployment"]).author


def retrain(ctx: JobContext) -> dict[str, Any]:
    """Retrain a deployed model on the latest labelled data into staging, with a comparison
    report and a recommendation (never deploys)."""
    return ctx.workspace._retrain(
        ctx.params, requested_by=ctx.submitted_by, job_id=ctx.id, progress=ctx.progress,
        log=ctx.log,
    )


register_kind(
    "retrain",
    retrain,
    action="model.retrain",
    owner=_champion_author,
    check=_check,
    subject="deployment",
    max_attempts=1,
)
