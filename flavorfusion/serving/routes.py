"""The routes: the original GET form, the JSON form, the Vertex AI contract (`predict`, `health`: their paths come
from the environment, so `create_app` mounts them), variants, metrics, the restaurant data and the page.

A request's reviews are checked and encoded on their own (`encoded`) before they join a batch: input the model
cannot take is a 400 for that request only, and input beyond the model's length is truncated to it. A request
whose client leaves while it waits is withdrawn from its batch (`generated`) and counted as 499. Every route that
answers GET answers HEAD.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flavorfusion.data.record import CSV_REVIEW_SEPARATOR
from flavorfusion.serving.batcher import QueueFull
from flavorfusion.serving.errors import ApiError, ClientGone, error_response
from flavorfusion.serving.registry import Variant
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

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
GET = ["GET", "HEAD"]
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 431, 500, 503)}
PREDICT = {"response_model": PredictResponse, "responses": ERRORS, "summary": "Vertex AI prediction"}
HEALTH = {"responses": {503: {"model": ErrorResponse}}, "summary": "200 once every variant is loaded"}
PAGE = resources.files("flavorfusion.serving").joinpath("static", "index.html").read_text(encoding="utf-8")

router = APIRouter()


def require_key(request: Request) -> None:
    """The summarize and predict routes' guard: the API key, when one is configured."""
    if not key_matches(request.app.state.api_key, presented_key(request)):
        raise ApiError(401, "this server requires an API key: send the header Authorization: Bearer KEY "
                            "(or X-API-Key: KEY)", headers={"WWW-Authenticate": "Bearer"})


def reviews_of(value: list[str], request: Request, where: str = "reviews") -> list[str]:
    """The non-empty reviews of one request (or instance), valid text, within the limits."""
    server = request.app.state.server
    for i, review in enumerate(value):
        try:
            review.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ApiError(400, f"{where}[{i}] is not valid text: {err.reason} at position {err.start}") from None
    reviews = [r.strip() for r in value if r.strip()]
    if not reviews:
        raise ApiError(400, f"{where} holds only empty texts: send at least one review" if value else
                       f"{where} is an empty list: send at least one review")
    if len(reviews) > server.max_reviews:
        raise ApiError(413, f"{where} holds {len(reviews)} reviews; this server takes at most {server.max_reviews} "
                            "per summary (serve.max_reviews)")
    chars = sum(map(len, reviews))
    if chars > server.max_chars:
        raise ApiError(413, f"{where} holds {chars} characters; this server takes at most {server.max_chars} per "
                            "summary (serve.max_chars)")
    return reviews


def loaded_variant(request: Request, name: str | None) -> Variant:
    variant = request.app.state.variants.get(name)
    if variant.loaded is None:
        raise ApiError(503, f"variant {variant.source.name} is still loading; retry in a second", RETRY_AFTER_S)
    return variant


async def encoded(variant: Variant, review_lists: list[list[str]], where: str = "reviews") -> list:
    """Each review list encoded on its own, off the event loop; one that cannot be encoded is a 400."""
    features = []
    for i, reviews in enumerate(review_lists):
        try:
            features.append(await asyncio.to_thread(variant.loaded.encode, reviews))
        except Exception as err:
            name = where if len(review_lists) == 1 else f"instances[{i}].reviews"
            raise ApiError(400, f"{name} cannot be encoded by this model: {type(err).__name__}: {err}") from None
    return features


async def client_gone(request: Request) -> None:
    """Returns when the client closes its connection (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def generated(request: Request, variant: Variant, features: list) -> list[str]:
    """The summaries of `features` from the variant's batcher; a client that leaves first withdraws them."""
    name = variant.source.name
    submit = asyncio.ensure_future(variant.batcher.submit(features))
    gone = asyncio.ensure_future(client_gone(request))
    try:
        await asyncio.wait({submit, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not submit.done():
        submit.cancel()  # items still queued are dropped before generation
        raise ClientGone()
    try:
        return submit.result()
    except QueueFull:
        request.app.state.telemetry.rejected.labels(name).inc()
        raise ApiError(503, f"busy: the queue of variant {name} is full (serve.max_queue="
                            f"{request.app.state.server.max_queue}); retry in a second", RETRY_AFTER_S) from None
    except Exception as err:  # a fault of the model, not of this input (the batcher retried it alone)
        request.app.state.telemetry.failed_items.labels(name).inc()
        log.error("variant %s: generation failed: %s: %s", name, type(err).__name__, " ".join(str(err).split())[:300])
        raise ApiError(500, f"generation failed in variant {name} ({type(err).__name__}); the error is in the "
                            "server's log") from None


def model_id(variant: Variant) -> ModelId:
    return ModelId(name=variant.loaded.name, sha256=variant.loaded.sha256)


@router.api_route("/", methods=GET, response_model=None,
                  summary="The original functions' form (?text=r1|||||r2), else the page")
async def root(request: Request, text: str | None = None, variant: str | None = None):
    if text is None:
        return HTMLResponse(PAGE)
    require_key(request)
    if not text.strip():
        raise ApiError(400, f"text is empty: give reviews as ?text=review1{CSV_REVIEW_SEPARATOR}review2")
    reviews = reviews_of(text.split(CSV_REVIEW_SEPARATOR), request, "text")
    chosen = loaded_variant(request, variant)
    summaries = await generated(request, chosen, await encoded(chosen, [reviews], "text"))
    return PlainTextResponse(summaries[0])


@router.api_route("/app", methods=GET, response_class=HTMLResponse, summary="The restaurant page")
async def page():
    return HTMLResponse(PAGE)


@router.post("/summarize", response_model=SummarizeResponse, responses=ERRORS, dependencies=[Depends(require_key)])
async def summarize(request: Request, body: SummarizeRequest) -> SummarizeResponse:
    start = time.perf_counter()
    reviews = reviews_of(body.reviews, request)
    variant = loaded_variant(request, body.variant)
    summaries = await generated(request, variant, await encoded(variant, [reviews]))
    return SummarizeResponse(summary=summaries[0], variant=variant.source.name, model=model_id(variant),
                             latency_ms=round((time.perf_counter() - start) * 1000, 1))


async def predict(request: Request, body: PredictRequest, _: None = Depends(require_key)) -> PredictResponse:
    server = request.app.state.server
    if len(body.instances) > server.max_queue:
        raise ApiError(413, f"{len(body.instances)} instances in one request; this server takes at most "
                            f"{server.max_queue} (serve.max_queue)")
    review_lists = [reviews_of(x.reviews, request, f"instances[{i}].reviews") for i, x in enumerate(body.instances)]
    variant = loaded_variant(request, body.parameters.variant if body.parameters else None)
    summaries = await generated(request, variant, await encoded(variant, review_lists))
    return PredictResponse(predictions=[{"summary": s} for s in summaries])


async def health(request: Request):
    waiting = request.app.state.variants.waiting()
    if waiting:
        return error_response(503, f"loading: {', '.join(waiting)}", {"Retry-After": str(RETRY_AFTER_S)})
    return {"status": "ok"}


@router.api_route("/variants", methods=GET, response_model=VariantsResponse)
async def variants(request: Request):
    registry = request.app.state.variants
    return {"default": registry.default,
            "variants": [{"name": v.source.name, "loaded": v.loaded is not None, "loads": v.loads,
                          "model": model_id(v) if v.loaded else {"name": v.source.model_name, "sha256": None},
                          **(v.loaded.info if v.loaded else {})} for v in registry]}


@router.api_route("/metrics", methods=GET, response_class=Response, summary="Prometheus text")
async def metrics(request: Request):
    return Response(generate_latest(request.app.state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)


@router.api_route("/api/about", methods=GET, summary="What the page says of its summaries and groups")
async def about(request: Request):
    default = request.app.state.variants.get(None)
    demo = bool(default.loaded and default.loaded.info.get("demo"))
    return request.app.state.catalog.about(demo)


@router.api_route("/api/restaurants", methods=GET)
async def restaurants(request: Request, q: str = "", limit: int = Query(50, ge=1, le=500)):
    catalog = request.app.state.catalog
    return {"restaurants": catalog.search(q, limit), "total": len(catalog.restaurants)}


@router.api_route("/api/restaurant", methods=GET, summary="One restaurant by ?id= (any characters)")
async def restaurant_by_query(request: Request, id: str):  # noqa: A002  (the query parameter's name)
    return restaurant_or_404(request, id)


@router.api_route("/api/restaurants/{business_id:path}", methods=GET, summary="One restaurant (the id may hold '/')")
async def restaurant(request: Request, business_id: str):
    return restaurant_or_404(request, business_id)


def restaurant_or_404(request: Request, business_id: str) -> dict:
    found = request.app.state.catalog.restaurant(business_id)
    if found is None:
        raise ApiError(404, f"no restaurant {business_id!r} in this server's summaries (serve.summaries)")
    return found
