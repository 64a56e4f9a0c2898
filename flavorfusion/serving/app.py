"""The HTTP app: the original GET form, a JSON form, the Vertex AI prediction contract, health, metrics and
the restaurant page, over one `Batcher` per model variant.

Every refusal is a 4xx (503 when busy or still loading) with a one-line JSON body `{"error": "..."}`; no
route answers with a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from flavorfusion.serving.batcher import Batcher, QueueFull
from flavorfusion.serving.page import PAGE, Catalog
from flavorfusion.serving.variants import LoadedModel, VariantSource

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_500_000  # Vertex AI's request limit (1.5 MB)
DRAIN_BYTES = 8 * MAX_BODY_BYTES
REVIEW_SEPARATOR = "|||||"  # the original Cloud Functions' `?text=review1|||||review2`
RETRY_AFTER_S = 1


@dataclass
class Settings:
    max_batch_size: int = 8
    batch_timeout_ms: float = 20
    max_queue: int = 64
    max_reviews: int = 100
    max_chars: int = 100_000
    predict_route: str = "/predict"
    health_route: str = "/healthz"


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class Variant:
    source: VariantSource
    batcher: Batcher
    loaded: LoadedModel | None = None
    loads: int = 0


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("flavorfusion_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("flavorfusion_request_latency_seconds", "Request latency by route", ["route"],
                                 registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_size = Histogram("flavorfusion_batch_size", "Items per generate call", ["variant"],
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.model_loads = Counter("flavorfusion_model_loads", "Model loads by variant (one per process)",
                                   ["variant"], registry=self.registry)
        self.queue_depth = Gauge("flavorfusion_queue_depth", "Items waiting for a batch", ["variant"],
                                 registry=self.registry)
        self.rejected = Counter("flavorfusion_queue_full", "Requests refused because the queue was full",
                                ["variant"], registry=self.registry)


def error_response(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def reviews_of(value, settings: Settings, where: str = "reviews") -> list[str]:
    """The non-empty reviews of a `reviews` field, within the limits."""
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ApiError(400, f"{where} must be a list of strings")
    reviews = [r.strip() for r in value if r.strip()]
    if not reviews:
        raise ApiError(400, f"{where} holds no review (empty texts only)" if value else f"{where} is empty")
    if len(reviews) > settings.max_reviews:
        raise ApiError(413, f"{where}: {len(reviews)} reviews, more than serve.max_reviews={settings.max_reviews}")
    chars = sum(map(len, reviews))
    if chars > settings.max_chars:
        raise ApiError(413, f"{where}: {chars} characters, more than serve.max_chars={settings.max_chars}")
    return reviews


async def json_body(request: Request) -> dict:
    length = request.headers.get("content-length")
    # an oversized body is read to its end (and dropped) up to DRAIN_BYTES, so that the client, still sending,
    # gets to read the 413 instead of a broken pipe; beyond that the connection is cut
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        if int(length) <= DRAIN_BYTES:
            async for _ in request.stream():
                pass
        raise ApiError(413, f"the body is {int(length)} bytes, more than {MAX_BODY_BYTES} (1.5 MB)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is more than {MAX_BODY_BYTES} bytes (1.5 MB)")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def create_app(sources: list[VariantSource], loader: Callable[[VariantSource], LoadedModel],
               settings: Settings | None = None, catalog: Catalog | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving `sources` (the first is the default variant). `loader` runs once per variant, in a thread,
    after the server starts listening: health answers 503 until every variant is loaded."""
    settings = settings or Settings()
    catalog = catalog or Catalog.empty()
    metrics = Metrics()
    variants: dict[str, Variant] = {}
    default = sources[0].name

    def make_variant(source: VariantSource) -> Variant:
        variant = Variant(source, None)  # type: ignore[arg-type]

        def process(review_lists: list[list[str]]) -> list[str]:
            return variant.loaded.summarize(review_lists)

        variant.batcher = Batcher(process, settings.max_batch_size, settings.batch_timeout_ms, settings.max_queue,
                                  on_batch=metrics.batch_size.labels(source.name).observe)
        metrics.queue_depth.labels(source.name).set_function(lambda: variant.batcher.depth)
        return variant

    for source in sources:
        variants[source.name] = make_variant(source)

    async def load_all() -> None:
        try:
            for variant in variants.values():  # one at a time: peak memory is one model's
                loaded = await asyncio.to_thread(loader, variant.source)
                variant.loaded, variant.loads = loaded, variant.loads + 1
                metrics.model_loads.labels(variant.source.name).inc()
        except Exception as err:
            log.error("loading failed: %s", err)
            if on_load_error:
                on_load_error(err)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for variant in variants.values():
            variant.batcher.start()
        loading = asyncio.create_task(load_all())
        yield
        loading.cancel()
        for variant in variants.values():
            await variant.batcher.stop()

    app = FastAPI(title="FlavorFusion", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, err.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        return error_response(400, "; ".join(str(e.get("msg")) for e in err.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        log.exception("internal error on %s", request.url.path)
        return error_response(500, f"internal error ({type(err).__name__})")

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    async def summarize(variant_name: str | None, review_lists: list[list[str]]) -> tuple[Variant, list[str]]:
        name = default if variant_name is None else variant_name
        if not isinstance(name, str):
            raise ApiError(400, "variant must be a string")
        variant = variants.get(name)
        if variant is None:
            raise ApiError(400, f"unknown variant {name!r}; known: {', '.join(variants)}")
        if variant.loaded is None:
            raise ApiError(503, f"variant {name} is still loading", RETRY_AFTER_S)
        try:
            return variant, await variant.batcher.submit(review_lists)
        except QueueFull:
            metrics.rejected.labels(name).inc()
            raise ApiError(503, f"busy: the queue of variant {name} is full (serve.max_queue="
                                f"{settings.max_queue}); retry later", RETRY_AFTER_S) from None

    @app.get("/")
    async def root(request: Request):
        if "text" not in request.query_params:
            return HTMLResponse(PAGE)
        text = request.query_params["text"]
        if not text.strip():
            raise ApiError(400, "text is empty: give reviews as ?text=review1|||||review2")
        reviews = reviews_of(text.split(REVIEW_SEPARATOR), settings, "text")
        _, summaries = await summarize(request.query_params.get("variant"), [reviews])
        return PlainTextResponse(summaries[0])

    @app.get("/app")
    async def page():
        return HTMLResponse(PAGE)

    @app.post("/summarize")
    async def summarize_json(request: Request):
        start = time.perf_counter()
        data = await json_body(request)
        if "reviews" not in data:
            raise ApiError(400, "the body needs reviews: a list of strings")
        reviews = reviews_of(data["reviews"], settings)
        variant, summaries = await summarize(data.get("variant"), [reviews])
        return {"summary": summaries[0], "variant": variant.source.name, "model": variant.loaded.model,
                "latency_ms": round((time.perf_counter() - start) * 1000, 1)}

    @app.post(settings.predict_route)
    async def predict(request: Request):
        data = await json_body(request)
        instances = data.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "instances must be a non-empty list of {\"reviews\": [...]}")
        if len(instances) > settings.max_queue:
            raise ApiError(413, f"{len(instances)} instances, more than serve.max_queue={settings.max_queue}")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ApiError(400, "parameters must be an object")
        unknown = sorted(set(parameters) - {"variant"})
        if unknown:
            raise ApiError(400, f"unknown parameters {', '.join(unknown)}; known: variant")
        review_lists = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or "reviews" not in instance:
                raise ApiError(400, f"instances[{i}] must be an object with reviews: a list of strings")
            review_lists.append(reviews_of(instance["reviews"], settings, f"instances[{i}].reviews"))
        _, summaries = await summarize(parameters.get("variant"), review_lists)
        return {"predictions": [{"summary": s} for s in summaries]}

    @app.get(settings.health_route)
    async def health():
        waiting = [name for name, v in variants.items() if v.loaded is None]
        if waiting:
            return error_response(503, f"loading: {', '.join(waiting)}")
        return {"status": "ok"}

    @app.get("/variants")
    async def list_variants():
        return {"default": default,
                "variants": [{"name": name, "model": v.source.label, "loaded": v.loaded is not None,
                              "loads": v.loads, **(v.loaded.info if v.loaded else {})}
                             for name, v in variants.items()]}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/restaurants")
    async def restaurants(q: str = "", limit: int = 50):
        return {"restaurants": catalog.search(q, max(1, min(limit, 500))), "total": len(catalog.restaurants)}

    @app.get("/api/restaurants/{business_id}")
    async def restaurant(business_id: str):
        found = catalog.restaurant(business_id)
        if found is None:
            raise ApiError(404, f"no restaurant {business_id!r} in serve.summaries")
        return found

    return app
