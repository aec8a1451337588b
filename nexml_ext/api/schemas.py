"""Request and response bodies (pydantic), which are also the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    inputs: list[dict[str, Any]] = Field(
        min_length=1, description="One object per row: input field name -> value."
    )
    subject_ids: list[str | None] | None = Field(
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


class Problem(BaseModel):
    detail: str
    request_id: str | None = None
    fields: dict[str, str] | None = Field(
        default=None, description="For 422: each bad field and what is wrong with it."
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
