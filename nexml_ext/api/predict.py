"""``POST /v1/routes/{route}/predict``: score rows through a route, one record per row."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from ..errors import NotFound
from ..workspace import views
from .keys import caller_label, presented_key
from .schemas import PredictRequest, PredictResponse, Problem, RouteName

router = APIRouter(tags=["predict"])

ERRORS = {
    401: {"model": Problem, "description": "Wrong or missing route key; nothing was scored."},
    404: {"model": Problem, "description": "No route of that name."},
    409: {"model": Problem, "description": "The route no longer fits its deployments."},
    413: {"model": Problem, "description": "Request body over the limit."},
    422: {"model": Problem, "description": "Input does not match the schema; names each field."},
    500: {"model": Problem, "description": "Model failure; nothing was recorded."},
}


@router.post(
    "/v1/routes/{route}/predict",
    response_model=PredictResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    summary="Score rows through a route",
)
def predict(route: RouteName, body: PredictRequest, request: Request) -> Response:
    """Score ``inputs`` through ``route`` with the route key (``Authorization: Bearer <key>``
    or ``X-Route-Key``). Each row is answered by the deployment the route sends it to, and is
    a committed record in that deployment's decision chain before this returns.

    The answer is a ``PredictResponse`` (the OpenAPI document says so) written directly as
    JSON: FastAPI would otherwise validate the returned model once more in its thread pool and
    serialise it field by field on every request (``tests/api/test_predict_body.py`` holds the
    body equal to the model's own serialisation)."""
    gateway = request.app.state.gateway
    key = presented_key(request)
    try:
        decisions = gateway.predict(
            route,
            body.inputs,
            subject_ids=body.subject_ids,
            explain=body.explain,
            key=key,
            caller=caller_label(key),
        )
    except NotFound:
        raise  # an unknown name stays out of the metric labels
    except Exception:
        request.state.metric_route = route
        raise
    request.state.metric_route = route
    metrics = request.app.state.metrics
    for d in decisions:
        metrics.predictions.labels(route, d.deployment, d.model_ref).inc()
    return Response(
        json_body(route, request.state.request_id, decisions, body.explain),
        media_type="application/json",
    )


def json_body(route: str, request_id: str, decisions: list[views.Decision], explain: bool) -> bytes:
    """The ``PredictResponse`` of ``decisions`` as JSON bytes, rendered as Starlette's
    JSONResponse renders (no NaN or infinity: a record never holds one)."""
    payload = {
        "route": route,
        "request_id": request_id,
        "predictions": [_row(d, explain) for d in decisions],
    }
    return json.dumps(
        payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _row(d: views.Decision, explain: bool) -> dict[str, Any]:
    """One ``PredictedRow``, its fields in the model's order."""
    binary = "cutoff" in d.output
    score = None if d.score is None else float(d.score)
    return {
        "request_id": d.request_id,
        "subject_id": d.subject_id,
        "prediction": d.prediction,
        "probability": score if binary else None,
        "score": score,
        "approved": d.output.get("approved"),
        "reasons": d.reasons,
        "explanation": d.explanation if explain else None,
        "deployment": d.deployment,
        "model_version": d.model_ref,
        "artifact_sha256": d.artifact_sha256,
        "rule": d.rule,
        "recorded": {"chain": d.chain, "seq": d.seq, "hash": d.hash},
    }
