"""The routes: the original GET form, the JSON form, the Vertex AI contract (`predict`, `health`: their paths come
from the environment, so `create_app` mounts them), variants, metrics and the restaurant page.

A request's reviews are checked and encoded on their own (`encoded`) before they join a batch: input the model
cannot take is a 400 for that request only, and input beyond the model's length is truncated to it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flavorfusion.serving.batcher import QueueFull
from flavorfusion.serving.page import PAGE
from flavorfusion.serving.schemas import (
    ErrorResponse,
    ModelId,
    PredictRequest,
    PredictResponse,
    SummarizeRequest,
    SummarizeResponse,
    VariantsResponse,
)
from flavorfusion.serving.security import key_matches, presented_key
from flavorfusion.serving.state import ApiError, Settings, Variant, error_response

log = logging.getLogger(__name__)

REVIEW_SEPARATOR = "|||||"  # the original Cloud Functions' `?text=review1|||||review2`
RETRY_AFTER_S = 1
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 500, 503)}
PREDICT = {"response_model": PredictResponse, "responses": ERRORS, "summary": "Vertex AI prediction"}
HEALTH = {"responses": {503: {"model": ErrorResponse}}, "summary": "200 once every variant is loaded"}

router = APIRouter()


def require_key(request: Request) -> None:
    """The summarize and predict routes' guard: the API key, when one is configured."""
    if not key_matches(request.app.state.settings.api_key, presented_key(request)):
        raise ApiError(401, "an API key is required: send Authorization: Bearer KEY (or X-API-Key: KEY)",
                       headers={"WWW-Authenticate": "Bearer"})


def reviews_of(value: list[str], settings: Settings, where: str = "reviews") -> list[str]:
    """The non-empty reviews of one request (or instance), valid text, within the limits."""
    for i, review in enumerate(value):
        try:
            review.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ApiError(400, f"{where}[{i}] is not valid text: {err.reason} at position {err.start}") from None
    reviews = [r.strip() for r in value if r.strip()]
    if not reviews:
        raise ApiError(400, f"{where} holds no review (empty texts only)" if value else f"{where} is empty")
    if len(reviews) > settings.max_reviews:
        raise ApiError(413, f"{where}: {len(reviews)} reviews, more than serve.max_reviews={settings.max_reviews}")
    chars = sum(map(len, reviews))
    if chars > settings.max_chars:
        raise ApiError(413, f"{where}: {chars} characters, more than serve.max_chars={settings.max_chars}")
    return reviews


def loaded_variant(request: Request, name: str | None) -> Variant:
    variant = request.app.state.variants.get(name)
    if variant.loaded is None:
        raise ApiError(503, f"variant {variant.source.name} is still loading", RETRY_AFTER_S)
    return variant


async def encoded(variant: Variant, review_lists: list[list[str]], where: str = "reviews") -> list:
    """Each review list encoded on its own, off the event loop; one that cannot be encoded is a 400."""
    features = []
    for i, reviews in enumerate(review_lists):
        try:
            features.append(await asyncio.to_thread(variant.loaded.encode, reviews))
        except Exception as err:
            name = where if len(review_lists) == 1 else f"instances[{i}].reviews"
            raise ApiError(400, f"{name} cannot be encoded: {type(err).__name__}: {err}") from None
    return features


async def generated(request: Request, variant: Variant, features: list) -> list[str]:
    name = variant.source.name
    try:
        return await variant.batcher.submit(features)
    except QueueFull:
        request.app.state.metrics.rejected.labels(name).inc()
        raise ApiError(503, f"busy: the queue of variant {name} is full (serve.max_queue="
                            f"{request.app.state.settings.max_queue}); retry later", RETRY_AFTER_S) from None
    except Exception as err:  # a fault of the model, not of this input (the batcher retried it alone)
        request.app.state.metrics.failed_items.labels(name).inc()
        log.error("variant %s: generation failed: %s: %s", name, type(err).__name__, " ".join(str(err).split())[:300])
        raise ApiError(500, f"generation failed in variant {name} ({type(err).__name__})") from None


def model_id(variant: Variant) -> ModelId:
    return ModelId(name=variant.loaded.name, sha256=variant.loaded.sha256)


@router.get("/", response_model=None, summary="The original functions' form (?text=r1|||||r2), else the page")
async def root(request: Request, text: str | None = None, variant: str | None = None):
    if text is None:
        return HTMLResponse(PAGE)
    require_key(request)
    if not text.strip():
        raise ApiError(400, "text is empty: give reviews as ?text=review1|||||review2")
    reviews = reviews_of(text.split(REVIEW_SEPARATOR), request.app.state.settings, "text")
    chosen = loaded_variant(request, variant)
    summaries = await generated(request, chosen, await encoded(chosen, [reviews], "text"))
    return PlainTextResponse(summaries[0])


@router.get("/app", response_class=HTMLResponse, summary="The restaurant page")
async def page():
    return HTMLResponse(PAGE)


@router.post("/summarize", response_model=SummarizeResponse, responses=ERRORS, dependencies=[Depends(require_key)])
async def summarize(request: Request, body: SummarizeRequest) -> SummarizeResponse:
    start = time.perf_counter()
    reviews = reviews_of(body.reviews, request.app.state.settings)
    variant = loaded_variant(request, body.variant)
    summaries = await generated(request, variant, await encoded(variant, [reviews]))
    return SummarizeResponse(summary=summaries[0], variant=variant.source.name, model=model_id(variant),
                             latency_ms=round((time.perf_counter() - start) * 1000, 1))


async def predict(request: Request, body: PredictRequest, _: None = Depends(require_key)) -> PredictResponse:
    settings = request.app.state.settings
    if len(body.instances) > settings.max_queue:
        raise ApiError(413, f"{len(body.instances)} instances, more than serve.max_queue={settings.max_queue}")
    review_lists = [reviews_of(x.reviews, settings, f"instances[{i}].reviews") for i, x in enumerate(body.instances)]
    variant = loaded_variant(request, body.parameters.variant if body.parameters else None)
    summaries = await generated(request, variant, await encoded(variant, review_lists))
    return PredictResponse(predictions=[{"summary": s} for s in summaries])


async def health(request: Request):
    waiting = request.app.state.variants.waiting()
    if waiting:
        return error_response(503, f"loading: {', '.join(waiting)}")
    return {"status": "ok"}


@router.get("/variants", response_model=VariantsResponse)
async def variants(request: Request):
    registry = request.app.state.variants
    return {"default": registry.default,
            "variants": [{"name": v.source.name, "loaded": v.loaded is not None, "loads": v.loads,
                          "model": model_id(v) if v.loaded else {"name": v.source.model_name, "sha256": None},
                          **(v.loaded.info if v.loaded else {})} for v in registry]}


@router.get("/metrics", response_class=Response, summary="Prometheus text")
async def metrics(request: Request):
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/restaurants")
async def restaurants(request: Request, q: str = "", limit: int = Query(50, ge=1, le=500)):
    catalog = request.app.state.catalog
    return {"restaurants": catalog.search(q, limit), "total": len(catalog.restaurants)}


@router.get("/api/about", summary="What the page says of its summaries and groups")
async def about(request: Request):
    from flavorfusion.serving.page import GROUPINGS

    grouping = request.app.state.catalog.grouping
    text = ("The summaries are machine-written by a language model from each group's reviews and can be wrong. "
            + GROUPINGS[grouping])
    return {"grouping": grouping, "text": text}


@router.get("/api/restaurant", summary="One restaurant by ?id= (any characters)")
async def restaurant_by_query(request: Request, id: str):  # noqa: A002  (the query parameter's name)
    return restaurant_or_404(request, id)


@router.get("/api/restaurants/{business_id:path}", summary="One restaurant (the id may hold '/')")
async def restaurant(request: Request, business_id: str):
    return restaurant_or_404(request, business_id)


def restaurant_or_404(request: Request, business_id: str) -> dict:
    found = request.app.state.catalog.restaurant(business_id)
    if found is None:
        raise ApiError(404, f"no restaurant {business_id!r} in serve.summaries")
    return found
