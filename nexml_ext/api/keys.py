"""The route key a caller presents, and the caller label recorded with their decisions."""

from __future__ import annotations

from starlette.requests import Request

from ..governance.routing import hash_route_key

ROUTE_KEY_HEADER = "X-Route-Key"


def presented_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer <key>``, else in ``X-Route-Key``; None if neither."""
    return key_of(
        request.headers.get("authorization", ""), request.headers.get(ROUTE_KEY_HEADER, "")
    )


def key_of(authorization: str, route_key: str) -> str | None:
    """The key of these two headers' values (``presented_key``)."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return route_key or None


def caller_label(key: str | None) -> str:
    """``route-key:<first 8 hex of its SHA-256>``: which key called, without revealing it (the
    prefix of the hash the routes table stores)."""
    if not key:
        return "route-key:none"
    return "route-key:" + hash_route_key(key)[:8]
