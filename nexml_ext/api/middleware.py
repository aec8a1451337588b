"""Per-request plumbing, as one pure ASGI layer: a request id, the body-size limit, the
Open Inference Protocol's binary tensor data turned into JSON, the hand-off of the predict
requests answered on the event loop (``predict.InlinePredict``), the last resort for
unexpected failures, and the request metrics.

Endpoints leave labels in ``request.state`` (``metric_route``, ``metric_version``); this layer
records them when the response is sent, whatever the outcome.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidInput
from .inference_v2 import BINARY_HEADER, json_of_binary_request
from .metrics import NONE, ServingMetrics

log = logging.getLogger("nexml_ext.api")

REQUEST_ID_HEADER = "X-Request-Id"


class ServingMiddleware:
    """Wraps the app: ``X-Request-Id`` on every response, 413 for a body over
    ``max_body_bytes`` (nothing is parsed or scored), 500 naming the request id for an
    exception no handler took, and one observation per request in ``metrics``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        max_body_bytes: int,
        inline: Callable[[Scope, bytes, Send], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.inline = inline  # answers a request itself (True) or leaves it to the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        sent_start = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_start
            if message["type"] == "http.response.start":
                sent_start = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            binary = _header(scope, BINARY_HEADER.encode())
            if body is None:
                await _send_json(send_with_id, 413, {
                    "detail": f"request body larger than {self.max_body_bytes} bytes",
                    "request_id": request_id,
                })
                return
            if binary is not None and scope["path"].startswith("/v2/"):
                try:
                    body = json_of_binary_request(body, binary.decode("latin-1"))
                except InvalidInput as exc:
                    await _send_json(send_with_id, 422, {
                        "detail": str(exc), "request_id": request_id, "error": str(exc),
                        "fields": getattr(exc, "problems", None),
                    })
                    return
                _carry_json_body(scope, len(body))
            elif self.inline is not None and await self.inline(scope, body, send_with_id):
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:
            log.exception("request %s failed", request_id)
            if sent_start:
                raise
            await _send_json(send_with_id, 500, {
                "detail": "internal error; nothing was recorded for this request",
                "request_id": request_id,
            })
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe(
                endpoint,
                state.get("metric_route", NONE),
                state.get("metric_version", NONE),
                status,
                time.perf_counter() - started,
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it exceeds the limit (declared or actual)."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    pass
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", []) if key == name), None)


def _carry_json_body(scope: Scope, length: int) -> None:
    """Make ``scope``'s headers describe a JSON body of ``length`` bytes."""
    dropped = {BINARY_HEADER.encode(), b"content-length", b"content-type"}
    headers = [(k, v) for k, v in scope.get("headers", []) if k not in dropped]
    headers += [(b"content-type", b"application/json"),
                (b"content-length", str(length).encode())]
    scope["headers"] = headers


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body over once, then waits for the disconnect."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
