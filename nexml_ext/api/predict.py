"""``POST /v1/routes/{route}/predict``: score rows through a route, one record per row."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import NotFound
from ..workspace import views
from .keys import caller_label, presented_key
from .schemas import PredictedRow, PredictRequest, PredictResponse, Problem, Recorded, RouteName

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
def predict(route: RouteName, body: PredictRequest, request: Request) -> PredictResponse:
    """Score ``inputs`` through ``route`` with the route key (``Authorization: Bearer <key>``
    or ``X-Route-Key``). Each row is answered by the deployment the route sends it to, and is
    a committed record in that deployment's decision chain before this returns."""
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
    return PredictResponse(
        route=route,
        request_id=request.state.request_id,
        predictions=[_row(d, body.explain) for d in decisions],
    )


def _row(d: views.Decision, explain: bool) -> PredictedRow:
    binary = "cutoff" in d.output
    return PredictedRow(
        request_id=d.request_id,
        subject_id=d.subject_id,
        prediction=d.prediction,
        probability=d.score if binary else None,
        score=d.score,
        approved=d.output.get("approved"),
        reasons=d.reasons,
        explanation=d.explanation if explain else None,
        deployment=d.deployment,
        model_version=d.model_ref,
        artifact_sha256=d.artifact_sha256,
        rule=d.rule,
        recorded=Recorded(chain=d.chain, seq=d.seq, hash=d.hash),
    )
