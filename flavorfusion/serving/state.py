"""What the app keeps on `app.state`: its settings, its metrics and the registry of model variants (each with its
batcher), and the one error shape (`ApiError` -> `{"error": "..."}`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flavorfusion.serving.batcher import Batcher
from flavorfusion.serving.variants import LoadedModel, VariantSource

MAX_BODY_BYTES = 1_500_000  # Vertex AI's request limit (1.5 MB)


@dataclass
class Settings:
    max_batch_size: int = 8
    batch_timeout_ms: float = 20
    max_queue: int = 64
    max_reviews: int = 100
    max_chars: int = 100_000
    predict_route: str = "/predict"
    health_route: str = "/healthz"
    body_timeout_s: float = 30
    cors_origins: list[str] = field(default_factory=list)
    api_key: str | None = field(default=None, repr=False)


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {**({"Retry-After": str(retry_after)} if retry_after is not None else {}), **(headers or {})}


@dataclass
class Variant:
    source: VariantSource
    batcher: Batcher
    loaded: LoadedModel | None = None
    loads: int = 0


class VariantRegistry:
    """The served variants by name (the first is the default), each with its batcher; on `app.state.variants`."""

    def __init__(self, sources: list[VariantSource], settings: Settings, metrics: Metrics):
        self.default = sources[0].name
        self.variants: dict[str, Variant] = {}
        for source in sources:
            self.variants[source.name] = self._make(source, settings, metrics)

    @staticmethod
    def _make(source: VariantSource, settings: Settings, metrics: Metrics) -> Variant:
        variant = Variant(source, None)  # type: ignore[arg-type]

        def process(features: list) -> list[str]:
            return variant.loaded.generate(features)

        variant.batcher = Batcher(process, settings.max_batch_size, settings.batch_timeout_ms, settings.max_queue,
                                  on_batch=metrics.batch_size.labels(source.name).observe)
        metrics.queue_depth.labels(source.name).set_function(lambda: variant.batcher.depth)
        return variant

    def get(self, name: str | None) -> Variant:
        name = self.default if name is None else name
        variant = self.variants.get(name)
        if variant is None:
            raise ApiError(400, f"unknown variant {name!r}; known: {', '.join(self.variants)}")
        return variant

    def waiting(self) -> list[str]:
        return [name for name, v in self.variants.items() if v.loaded is None]

    def __iter__(self):
        return iter(self.variants.values())


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("flavorfusion_requests", "HTTP responses by route and status (499: the client "
                                "left first)", ["route", "status"], registry=self.registry)
        self.latency = Histogram("flavorfusion_request_latency_seconds", "Request latency by route and status",
                                 ["route", "status"], registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_size = Histogram("flavorfusion_batch_size", "Items per generate call", ["variant"],
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.model_loads = Counter("flavorfusion_model_loads", "Model loads by variant (one per process)",
                                   ["variant"], registry=self.registry)
        self.queue_depth = Gauge("flavorfusion_queue_depth", "Items waiting for a batch", ["variant"],
                                 registry=self.registry)
        self.rejected = Counter("flavorfusion_queue_full", "Requests refused because the queue was full",
                                ["variant"], registry=self.registry)
        self.failed_items = Counter("flavorfusion_generation_failures", "Items whose generation failed (alone)",
                                    ["variant"], registry=self.registry)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers or None)
