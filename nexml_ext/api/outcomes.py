"""``POST /v1/routes/{route}/outcomes``: attach what really happened to a route's past decisions.

The caller presents the route's key, as for predict. It reaches only decisions made through
that route: an id the route never answered is refused (404, naming it) exactly like one that
exists nowhere, so a key for one route learns nothing about another's decisions. All items are
attached in one transaction with one ``prediction.outcome`` event, or none are.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import AuthenticationFailed
from .keys import caller_label, presented_key
from .schemas import ROUTE_KEY, OutcomesRequest, OutcomesResponse, Problem, RouteName

router = APIRouter(tags=["outcomes"])

ERRORS = {
    401: {"model": Problem, "description": "Wrong or missing route key; nothing was recorded."},
    404: {
        "model": Problem,
        "description": "No route of that name, or ids matching no decision made through it "
        "(each named in `fields`); nothing was recorded.",
    },
    413: {"model": Problem, "description": "Request body over the limit."},
    422: {"model": Problem, "description": "Malformed items, each named; nothing was recorded."},
}


@router.post(
    "/v1/routes/{route}/outcomes",
    response_model=OutcomesResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
    summary="Attach actual outcomes to past decisions of a route",
)
def record_outcomes(route: RouteName, body: OutcomesRequest, request: Request) -> OutcomesResponse:
    """Attach each item's ``outcome`` to the decision with its ``request_id``, or to every
    decision about its ``subject_id``, among the decisions made through ``route`` (its answers
    and its shadow's records). Needs the route key (``Authorization: Bearer <key>`` or
    ``X-Route-Key``). Used for performance monitoring; the records' hashes do not change."""
    gateway = request.app.state.gateway
    key = presented_key(request)
    try:
        gateway.check_route_key(route, key)  # an unknown name stays out of the metric labels
    except AuthenticationFailed:
        request.state.metric_route = route
        raise
    request.state.metric_route = route
    request_ids = gateway.attach_outcomes(
        [item.model_dump(exclude_none=True) for item in body.outcomes],
        route=route,
        key=key,
        caller=caller_label(key),
    )
    return OutcomesResponse(
        route=route,
        request_id=request.state.request_id,
        attached=len(request_ids),
        request_ids=request_ids,
    )
