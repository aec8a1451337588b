"""Request and response bodies (pydantic), which are also the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from ..governance.naming import NAME_PATTERN

# A route's name as `check_name` allows it: anything else can name no route, and is refused
# (422) before the store is asked.
RouteName = Annotated[str, Path(pattern=NAME_PATTERN, description="The route's name.")]
# Ids as the prediction records store them: bounded, and never a NUL (PostgreSQL text cannot
# hold one).
_NO_NUL = r"^[^\x00]+$"
RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]
SubjectId = Annotated[str, Field(min_length=1, max_length=128, pattern=_NO_NUL)]

# How callers present a route key, for the OpenAPI document (either one; the endpoints read
# the key themselves, see keys.presented_key).
ROUTE_KEY = [
    Security(HTTPBearer(
        scheme_name="routeKeyBearer", auto_error=False,
        description="The route key as a bearer token: `Authorization: Bearer nxr_...`.",
    )),
    Security(APIKeyHeader(
        name="X-Route-Key", scheme_name="routeKeyHeader", auto_error=False,
        description="The route key in its own header.",
    )),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    inputs: list[Annotated[dict[str, Any], Field(min_length=1)]] = Field(
        min_length=1, description="One object per row: input field name -> value."
    )
    subject_ids: list[SubjectId | None] | None = Field(
        default=None, description="Who each row is about (one per row; drives canary routing)."
    )
    explain: bool = Field(default=True, description="Add each row's local contributions.")


class Recorded(BaseModel):
    """Where the row's record sits in its deployment's hash chain."""

    chain: str
    seq: int
    hash: str


class PredictedRow(BaseModel):
    request_id: str = Field(description="This row's record id (find it with `nexml audit find`).")
    subject_id: str | None
    prediction: Any
    probability: float | None = Field(
        description="Probability of the positive class (binary models), else null."
    )
    score: float | None
    approved: bool | None = None
    reasons: list[dict[str, Any]] = Field(description="Reason codes when declined.")
    explanation: dict[str, Any] | None = None
    deployment: str
    model_version: str
    artifact_sha256: str
    rule: str | None
    recorded: Recorded


class PredictResponse(BaseModel):
    route: str
    request_id: str = Field(description="This HTTP request's id (also in X-Request-Id).")
    predictions: list[PredictedRow]


class OutcomeItem(_Strict):
    """One actual outcome, for one request id or for every decision about one subject."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["request_id"]}, {"required": ["subject_id"]}]},
    )

    # Either may be left out, neither may be null (defaults are not validated).
    request_id: RequestId = Field(
        default=None, description="A row's request id, as the prediction returned it."
    )
    subject_id: SubjectId = Field(
        default=None, description="Every decision about this subject made through the route."
    )
    outcome: JsonValue = Field(
        description="What really happened (any JSON value but null), e.g. 1 for defaulted.",
        json_schema_extra={"not": {"type": "null"}},
    )

    @model_validator(mode="after")
    def _one_id_and_an_outcome(self) -> OutcomeItem:
        if (self.request_id is None) == (self.subject_id is None):
            raise ValueError("give exactly one of request_id or subject_id")
        if self.outcome is None:
            raise ValueError("outcome must not be null")
        return self


class OutcomesRequest(_Strict):
    outcomes: list[OutcomeItem] = Field(
        min_length=1, max_length=10_000, description="Attached all together, or none."
    )


class OutcomesResponse(BaseModel):
    route: str
    request_id: str = Field(description="This HTTP request's id (also in X-Request-Id).")
    attached: int = Field(description="How many recorded decisions got an outcome.")
    request_ids: list[str] = Field(description="The request ids of those decisions.")


class Problem(BaseModel):
    detail: str
    request_id: str | None = None
    fields: dict[str, str] | None = Field(
        default=None,
        description="For 422 (and 404 naming unknown ids): each bad field and what is wrong.",
    )
    error: str | None = Field(
        default=None, description="On /v2 paths: the detail again, as the Open Inference "
        "Protocol's error field."
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


# --- Open Inference Protocol v2 --------------------------------------------------------------

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[InferTensor]


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool
