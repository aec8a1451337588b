"""Operations endpoints: ``/healthz`` (the process answers), ``/readyz`` (its store answers)
and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .schemas import Health

log = logging.getLogger("nexml_ext.api")

router = APIRouter(tags=["operations"])


def store_ready(gateway: Any) -> tuple[bool, str | None]:
    """(True, None) when the store answers a deployments query, else (False, why)."""
    try:
        gateway.deployments()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the probe says why
        log.warning("not ready: %s", exc)
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness: the store answers")
def readyz(request: Request) -> Any:
    ok, why = store_ready(request.app.state.gateway)
    body = Health(status="ok" if ok else "unavailable", detail=why)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    served = request.app.state.metrics
    return Response(served.render(), media_type=served.content_type)
