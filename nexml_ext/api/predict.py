"""``POST /v1/routes/{route}/predict``: score rows through a route, one record per row.

Two ways in, one behaviour. The FastAPI endpoint (``predict``) defines the operation, its
OpenAPI document, its refusals, and serves everything in the thread pool. ``InlinePredict``
answers the common request — a well-formed JSON body of a few rows for a route whose models are
loaded — on the event loop itself, its record committed together with those of the requests
the loop handled alongside it (``LoopCommitter``): no thread hand-off, no framework layers per
request. Anything else it declines, before doing anything, and the endpoint answers it.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import ValidationError
from starlette.types import Message, Scope, Send

from ..errors import NexmlError, NotFound
from ..governance.naming import NAME_PATTERN
from ..store.decision_log import LoopCommitter
from ..workspace import views
from ..workspace.predictions import Cold, decision_log
from .keys import ROUTE_KEY_HEADER, caller_label, key_of, presented_key
from .schemas import PredictRequest, PredictResponse, Problem, RouteName

PATH = "/v1/routes/{route}/predict"
#: Requests of more rows than this are served in the thread pool, so that a large batch never
#: holds up the event loop (and every other caller) while it is scored and explained.
INLINE_ROWS = 32

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
    PATH,
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
    return answer(
        request.app.state.metrics, route, request.state.request_id, decisions, body.explain
    )


def answer(
    metrics: Any, route: str, request_id: str, decisions: list[views.Decision], explain: bool
) -> Response:
    """The 200 answer: each decision counted in ``metrics``, the body ``json_body``."""
    for d in decisions:
        metrics.predictions.labels(route, d.deployment, d.model_ref).inc()
    return Response(
        json_body(route, request_id, decisions, explain), media_type="application/json"
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


class InlinePredict:
    """``POST /v1/routes/{route}/predict`` on the event loop, for ``ServingMiddleware``.

    Called with the request's scope, its whole body and the middleware's ``send``; returns
    False, having done nothing, when the endpoint should answer instead: another path or
    method, a body that is not JSON (by header or content) or does not validate as a
    ``PredictRequest`` (the endpoint's 422 names the fields), more than ``INLINE_ROWS`` rows,
    or a route whose model must first be loaded or its explanation reference prepared
    (``Cold``). Otherwise it answers exactly as the endpoint does: the same body, status,
    refusals and metrics.
    """

    def __init__(self, app: FastAPI, refuse: Callable[[Request, Any], Awaitable[Response]]) -> None:
        self._gateway = app.state.gateway
        self._metrics = app.state.metrics
        self._refuse = refuse
        self._route = next(r for r in router.routes if getattr(r, "path", None) == PATH)
        # one committer per event loop (uvicorn runs one; a test client may run many)
        self._committers: weakref.WeakKeyDictionary[Any, LoopCommitter] = (
            weakref.WeakKeyDictionary()
        )
        self._path = re.compile(r"^/v1/routes/([^/]+)/predict$")
        self._name = re.compile(NAME_PATTERN)

    async def __call__(self, scope: Scope, body: bytes, send: Send) -> bool:
        if scope["method"] != "POST":
            return False
        matched = self._path.match(scope["path"])
        if matched is None or not self._name.match(route := matched.group(1)):
            return False
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette
        if headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
            return False
        try:
            request = PredictRequest.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # the endpoint says what is wrong
            return False
        if len(request.inputs) > INLINE_ROWS:
            return False
        key = key_of(
            headers.get(b"authorization", b"").decode("latin-1"),
            headers.get(ROUTE_KEY_HEADER.lower().encode(), b"").decode("latin-1"),
        )
        state = scope["state"]
        scope["route"] = self._route  # the metrics' endpoint label, as routing sets it
        try:
            pending = self._gateway.prepare_predict(
                route,
                request.inputs,
                subject_ids=request.subject_ids,
                explain=request.explain,
                key=key,
                caller=caller_label(key),
                warm_only=True,
            )
            decisions = pending.finish(await self._committer().submit(pending.records))
        except Cold:
            return False  # nothing was done; the endpoint loads what it needs
        except NotFound as exc:  # an unknown name stays out of the metric labels
            await self._send(scope, send, await self._refuse(Request(scope), exc))
            return True
        except NexmlError as exc:
            state["metric_route"] = route
            await self._send(scope, send, await self._refuse(Request(scope), exc))
            return True
        except Exception:
            state["metric_route"] = route
            raise
        state["metric_route"] = route
        response = answer(self._metrics, route, state["request_id"], decisions, request.explain)
        await self._send(scope, send, response)
        return True

    def _committer(self) -> LoopCommitter:
        loop = asyncio.get_running_loop()
        committer = self._committers.get(loop)
        if committer is None:
            db = self._gateway._db
            committer = self._committers[loop] = LoopCommitter(
                decision_log(db), inline=db.backend == "sqlite"
            )
        return committer

    @staticmethod
    async def _send(scope: Scope, send: Send, response: Response) -> None:
        async def nothing() -> Message:  # a response reads nothing of the request
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)
