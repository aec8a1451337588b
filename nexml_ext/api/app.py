"""``create_app``: wires the routers, the error mapping and the per-request layer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NexmlError,
    NotFound,
    PermissionDenied,
)
from . import inference_v2, outcomes, predict, probes
from .metrics import ServingMetrics
from .middleware import ServingMiddleware
from .schemas import ROUTE_KEY

MAX_BODY_BYTES = 1024 * 1024

# First match wins: subclasses before their bases.
_STATUS: list[tuple[type[NexmlError], int]] = [
    (AuthenticationFailed, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (InvalidTransition, 409),
]


def create_app(
    workspace: Any, *, max_body_bytes: int = MAX_BODY_BYTES, inline: bool = True
) -> FastAPI:
    """The serving app over ``workspace``, which it uses acting as the platform.

    Route callers are authorised by their route key, not by the workspace's user. Bodies over
    ``max_body_bytes`` get 413. With ``inline`` (the default), small predict requests are
    answered on the event loop (``predict.InlinePredict``); without, every request goes
    through the endpoints. The caller keeps ownership of ``workspace`` (closes it).
    """
    from ..workspace.predictions import decision_log

    gateway = workspace._as_platform()
    gateway._clock = None  # the gateway records real time, even over a simulating workspace
    log = decision_log(gateway._db)
    app = FastAPI(
        title="nexml-ext serving",
        version=__version__,
        description="Governed model serving: every answered row is a recorded decision.",
    )
    app.state.gateway = gateway
    app.state.metrics = ServingMetrics(queue_depth=lambda: log.queue_depth)
    app.include_router(predict.router, dependencies=ROUTE_KEY)
    app.include_router(outcomes.router)
    app.include_router(inference_v2.router)
    app.include_router(probes.router)
    app.add_exception_handler(NexmlError, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _malformed)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(
        ServingMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=max_body_bytes,
        inline=predict.InlinePredict(app, _refused) if inline else None,
    )
    return app


def _problem(request: Request, status: int, detail: str, fields: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "request_id": request.state.request_id}
    if fields is not None:
        body["fields"] = fields
    if request.url.path.startswith("/v2"):
        body["error"] = detail  # the Open Inference Protocol's error field
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _refused(request: Request, exc: NexmlError) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), None)
    if status is None:
        raise exc  # not a refusal of the request: the per-request layer answers 500
    fields = getattr(exc, "problems", None) if status in (404, 422) else None
    return _problem(request, status, str(exc), fields)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """The framework's own refusals (unknown path, wrong method, an unreadable body) in the
    same shape as ours; a body that cannot be parsed at all is malformed input, 422."""
    if exc.status_code == 400:
        why = f"request body is not valid JSON text in UTF-8 ({exc.detail})"
        return _problem(request, 422, why, {"body": why})
    response = _problem(request, exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = {
        ".".join(str(part) for part in error["loc"]): error["msg"] for error in exc.errors()
    }
    listed = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return _problem(request, 422, f"request does not match the schema: {listed}", fields)
