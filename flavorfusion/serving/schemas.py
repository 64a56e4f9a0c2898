"""The API's request and response bodies (FastAPI validates requests with them and publishes them in
/openapi.json). Requests refuse unknown fields: a misspelt or unsupported parameter is a 400, never ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummarizeRequest(Strict):
    reviews: list[str] = Field(description="the reviews of one group, one text each")
    variant: str | None = Field(None, description="a served variant (GET /variants); default: the first")


class Instance(Strict):
    reviews: list[str]


class Parameters(Strict):
    variant: str | None = None


class PredictRequest(Strict):
    """Vertex AI's prediction contract."""

    instances: list[Instance] = Field(min_length=1)
    parameters: Parameters | None = None


class ModelId(BaseModel):
    name: str = Field(description="the artifact, Hub or export directory name (never a filesystem path)")
    sha256: str | None = Field(description="a content hash of the weights (names, dtypes, shapes, bytes)")


class SummarizeResponse(BaseModel):
    summary: str
    variant: str
    model: ModelId
    latency_ms: float


class Prediction(BaseModel):
    summary: str


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    """Every refusal and failure: one line, no stack trace."""

    error: str


class VariantInfo(BaseModel):
    model_config = ConfigDict(extra="allow")  # device, quantized, load_seconds once loaded

    name: str
    model: ModelId
    loaded: bool
    loads: int


class VariantsResponse(BaseModel):
    default: str
    variants: list[VariantInfo]
