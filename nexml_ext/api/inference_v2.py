"""The Open Inference Protocol v2 (KServe / Triton REST), so standard inference clients work.

A *model* here is a deployment: ``/v2/models/{name}`` is deployment ``name``, and its one
version is the number of the model version it serves now (``credit-risk:3`` -> ``"3"``).
Callers present a route key (as on ``/v1``), and ``name`` must be a deployment that route can
send to (a rule's target, its default, canary or shadow); the rows are scored by that
deployment directly, bypassing the route's rules, and recorded with the caller's key label.

Inputs are columns: one tensor per input field, named as the field, shape ``[n]`` (or
``[n, 1]``), ``FP64``/``FP32``/``INT64``/``INT32`` for numbers, ``BOOL`` for booleans and
``BYTES`` (JSON strings) for categories and dates. Outputs are ``prediction``, ``probability``
(binary models; ``score`` otherwise) and ``request_id`` (each row's record id), shape ``[n]``,
always as JSON data. Input data may also come with the binary tensor data extension (Triton's
client does that by default): the middleware turns such a request into its JSON form with
:func:`json_of_binary_request` before it is parsed.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import InvalidInput, NotFound
from ..workspace import views
from .keys import caller_label, presented_key
from .probes import store_ready
from .schemas import (
    ROUTE_KEY,
    InferRequest,
    InferResponse,
    InferTensor,
    Liveness,
    ModelMetadata,
    Problem,
    Readiness,
    ServerMetadata,
    TensorMetadata,
)

# Standard clients (Triton's among them) send the JSON body with no Content-Type; recent FastAPI
# refuses such bodies unless told not to (older versions parsed them as JSON anyway).
_LENIENT = (
    {"strict_content_type": False}
    if "strict_content_type" in inspect.signature(APIRouter).parameters
    else {}
)
router = APIRouter(prefix="/v2", tags=["inference-v2"], **_LENIENT)

ERRORS = {
    401: {"model": Problem, "description": "No route accepting this key sends to the model."},
    404: {"model": Problem, "description": "No active deployment (or version) of that name."},
    422: {"model": Problem, "description": "Tensors do not match the model's inputs."},
    500: {"model": Problem, "description": "Model failure; nothing was recorded."},
}
_DATATYPE = {"numeric": "FP64", "boolean": "BOOL"}  # anything else travels as BYTES


@router.get("", response_model=ServerMetadata, summary="Server metadata")
def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="nexml-ext", version=__version__, extensions=["binary_tensor_data"])


@router.get("/health/live", response_model=Liveness, summary="Server liveness")
def live() -> Liveness:
    return Liveness(live=True)


@router.get("/health/ready", response_model=Readiness, summary="Server readiness")
def ready(request: Request) -> Any:
    ok, _ = store_ready(request.app.state.gateway)
    return JSONResponse(Readiness(ready=ok).model_dump(), status_code=200 if ok else 503)


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def model_metadata(name: str, request: Request) -> ModelMetadata:
    """What the deployment's current version takes and returns (route key required)."""
    deployment = _authorised(request, name)
    return _metadata(request, deployment)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def version_metadata(name: str, version: str, request: Request) -> ModelMetadata:
    deployment = _authorised(request, name, version)
    return _metadata(request, deployment)


@router.get(
    "/models/{name}/ready",
    response_model=Readiness,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def model_ready(name: str, request: Request) -> Readiness:
    _authorised(request, name)
    return Readiness(ready=True)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=Readiness,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def version_ready(name: str, version: str, request: Request) -> Readiness:
    _authorised(request, name, version)
    return Readiness(ready=True)


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def infer(name: str, body: InferRequest, request: Request) -> InferResponse:
    """Score the rows the tensors hold with deployment ``name``, recording each."""
    return _infer(request, name, None, body)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=ROUTE_KEY,
)
def infer_version(name: str, version: str, body: InferRequest, request: Request) -> InferResponse:
    return _infer(request, name, version, body)


# --- helpers ---------------------------------------------------------------------------------


def _authorised(request: Request, name: str, version: str | None = None) -> views.Deployment:
    """Deployment ``name`` if it is active (and serves ``version``, when given) and a route
    sending to it accepts the presented key. Raises NotFound, AuthenticationFailed."""
    gateway = request.app.state.gateway
    key = presented_key(request)
    deployment = next((d for d in gateway.deployments() if d.name == name), None)
    if deployment is None or deployment.status != "active":
        raise NotFound(f"model {name!r} not found: no active deployment of that name")
    request.state.metric_route = f"v2:{name}"
    served = _version_of(deployment)
    request.state.metric_version = deployment.model_ref
    if version is not None and version != served:
        raise NotFound(f"model {name!r} has no version {version!r}; it serves {served!r}")
    gateway.check_deployment_key(name, key)
    return deployment


def _version_of(deployment: views.Deployment) -> str:
    return deployment.model_ref.rsplit(":", 1)[-1]


def _metadata(request: Request, deployment: views.Deployment) -> ModelMetadata:
    model = request.app.state.gateway._load_model(deployment.model_ref)  # cached, verified
    columns = (model.input_schema or {}).get("columns") or {}
    outputs = [TensorMetadata(name="prediction", datatype="BYTES", shape=[-1])]
    if model.problem_type == "binary":
        outputs.append(TensorMetadata(name="probability", datatype="FP64", shape=[-1]))
    else:
        outputs.append(TensorMetadata(name="score", datatype="FP64", shape=[-1]))
    outputs.append(TensorMetadata(name="request_id", datatype="BYTES", shape=[-1]))
    return ModelMetadata(
        name=deployment.name,
        versions=[_version_of(deployment)],
        platform=f"nexml-ext/{getattr(model, 'flavour', None) or 'model'}",
        inputs=[
            TensorMetadata(
                name=column, datatype=_DATATYPE.get(entry.get("kind"), "BYTES"), shape=[-1]
            )
            for column, entry in columns.items()
        ],
        outputs=outputs,
    )


def _infer(request: Request, name: str, version: str | None, body: InferRequest) -> InferResponse:
    deployment = _authorised(request, name, version)
    gateway = request.app.state.gateway
    binary = gateway._load_model(deployment.model_ref).problem_type == "binary"
    third = "probability" if binary else "score"
    names = ["prediction", third, "request_id"]
    wanted = [o.name for o in body.outputs] if body.outputs else names
    unknown = {w: "no such output" for w in wanted if w not in names}
    if unknown:  # refused before anything is scored
        _invalid(f"unknown outputs requested: {', '.join(unknown)}", unknown)
    rows = _rows(body.inputs)
    decisions = gateway.score_deployment(
        name, rows, explain=False, caller=caller_label(presented_key(request))
    )
    metrics = request.app.state.metrics
    for d in decisions:
        metrics.predictions.labels("", d.deployment, d.model_ref).inc()
    n = len(decisions)
    predictions = [d.prediction for d in decisions]
    tensors = {
        "prediction": InferTensor(
            name="prediction", shape=[n], datatype=_datatype_of(predictions), data=predictions
        ),
        third: InferTensor(
            name=third, shape=[n], datatype="FP64", data=[d.score for d in decisions]
        ),
        "request_id": InferTensor(
            name="request_id", shape=[n], datatype="BYTES", data=[d.request_id for d in decisions]
        ),
    }
    served = decisions[0].model_ref if decisions else deployment.model_ref
    return InferResponse(
        model_name=name,
        model_version=served.rsplit(":", 1)[-1],
        id=body.id or request.state.request_id,
        parameters={"request_ids": [d.request_id for d in decisions]},
        outputs=[tensors[w] for w in wanted],
    )


def _rows(tensors: list[InferTensor]) -> list[dict[str, Any]]:
    """One dict per row from column tensors. Raises InvalidInput naming each bad tensor."""
    problems: dict[str, str] = {}
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        shape = tensor.shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            problems[tensor.name] = f"shape must be [n] or [n, 1], got {shape}"
            continue
        data = _flat(tensor.data)
        if len(data) != shape[0]:
            problems[tensor.name] = f"shape {shape} but {len(data)} values"
            continue
        if tensor.name in columns:
            problems[tensor.name] = "given twice"
            continue
        columns[tensor.name] = data
    lengths = {len(v) for v in columns.values()}
    if not problems and len(lengths) > 1:
        problems = {name: f"{len(v)} rows; tensors differ" for name, v in columns.items()}
    if problems:
        _invalid("input tensors are malformed", problems)
    n = lengths.pop() if lengths else 0
    return [{column: values[i] for column, values in columns.items()} for i in range(n)]


def _flat(data: list[Any]) -> list[Any]:
    return [v for item in data for v in (item if isinstance(item, list) else [item])]


def _datatype_of(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, float) and math.isfinite(v) for v in values):
        return "FP64"
    return "BYTES"


def _invalid(message: str, problems: dict[str, str]) -> None:
    error = InvalidInput(f"{message}: " + "; ".join(f"{k!r}: {v}" for k, v in problems.items()))
    error.problems = problems  # type: ignore[attr-defined]
    raise error


# --- the binary tensor data extension --------------------------------------------------------

BINARY_HEADER = "inference-header-content-length"
_ITEM = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}


def json_of_binary_request(body: bytes, header_length: str) -> bytes:
    """The JSON-only form of an inference request using the binary tensor data extension: the
    first ``header_length`` bytes are the JSON request, and each input with
    ``parameters.binary_data_size`` has that many raw bytes next, in input order (little-endian
    values; BYTES as 4-byte length-prefixed elements). Raises InvalidInput naming what is
    wrong; nothing is scored then."""
    import json

    import numpy as np

    try:
        size = int(header_length)
        request = json.loads(body[:size]) if 0 <= size <= len(body) else None
    except ValueError:
        request = None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        _invalid("binary inference request malformed", {
            BINARY_HEADER: "must be the length of a JSON request object at the body's start",
        })
    offset, problems = size, {}
    for tensor in request["inputs"]:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue
        name = str(tensor.get("name"))
        length = parameters.pop("binary_data_size")
        datatype = tensor.get("datatype")
        if not isinstance(length, int) or length < 0 or offset + length > len(body):
            problems[name] = f"binary_data_size {length!r} does not fit the body"
            break
        raw = body[offset:offset + length]
        offset += length
        if datatype == "BYTES":
            values, at = [], 0
            while at + 4 <= len(raw):
                n = int.from_bytes(raw[at:at + 4], "little")
                values.append(raw[at + 4:at + 4 + n].decode("utf-8", errors="replace"))
                at += 4 + n
            if at != len(raw):
                problems[name] = "BYTES data is not a sequence of length-prefixed elements"
                continue
        elif datatype in _ITEM and length % np.dtype(_ITEM[datatype]).itemsize == 0:
            values = np.frombuffer(raw, dtype=_ITEM[datatype]).tolist()
        else:
            problems[name] = f"{length} bytes cannot hold {datatype} values"
            continue
        tensor["data"] = values
    if not problems and offset != len(body):
        problems[BINARY_HEADER] = f"{len(body) - offset} bytes after the last tensor"
    if problems:
        _invalid("binary tensor data malformed", problems)
    return json.dumps(request).encode()
