"""The HTTP app: `create_app` assembles the variants' registry (on `app.state`), the limits and security
middleware, one error shape and the routes (`serving.routes`).

Every refusal is a 4xx (503 when busy or still loading) with a one-line JSON body `{"error": "..."}`; no
route answers with a stack trace; a failure is a JSON 500, counted in /metrics.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from flavorfusion.serving import routes
from flavorfusion.serving.limits import BodyReader, Observe, SecurityHeaders
from flavorfusion.serving.page import PAGE, Catalog
from flavorfusion.serving.state import (  # noqa: F401  (Settings, ApiError: the app's public names)
    MAX_BODY_BYTES,
    ApiError,
    Metrics,
    Settings,
    VariantRegistry,
    error_response,
)
from flavorfusion.serving.variants import LoadedModel, VariantSource

log = logging.getLogger(__name__)

def _inline_hash(tag: str) -> str:
    body = re.search(rf"<{tag}>(.*?)</{tag}>", PAGE, re.S).group(1)
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


# the page's one inline script and style are allowed by hash; nothing else runs, loads or frames it
CSP = (f"default-src 'none'; script-src {_inline_hash('script')}; style-src {_inline_hash('style')}; "
       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(sources: list[VariantSource], loader: Callable[[VariantSource], LoadedModel],
               settings: Settings | None = None, catalog: Catalog | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving `sources` (the first is the default variant). `loader` runs once per variant, in a thread,
    after the server starts listening: health answers 503 until every variant is loaded."""
    settings = settings or Settings()
    metrics = Metrics()
    registry = VariantRegistry(sources, settings, metrics)

    async def load_all() -> None:
        try:
            for variant in registry:  # one at a time: peak memory is one model's
                loaded = await asyncio.to_thread(loader, variant.source)
                variant.loaded, variant.loads = loaded, variant.loads + 1
                metrics.model_loads.labels(variant.source.name).inc()
        except Exception as err:
            log.error("loading failed: %s", err)
            if on_load_error:
                on_load_error(err)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for variant in registry:
            variant.batcher.start()
        loading = asyncio.create_task(load_all())
        yield
        loading.cancel()
        for variant in registry:
            await variant.batcher.stop()

    app = FastAPI(title="FlavorFusion", summary="Summaries of restaurant reviews by cultural group",
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.settings, app.state.metrics, app.state.variants = settings, metrics, registry
    app.state.catalog = catalog or Catalog.empty()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, err.detail, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        return error_response(400, validation_message(err))

    app.include_router(routes.router)
    # Vertex AI names these two routes (AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE)
    app.add_api_route(settings.predict_route, routes.predict, methods=["POST"], **routes.PREDICT)
    app.add_api_route(settings.health_route, routes.health, methods=["GET"], **routes.HEALTH)

    # innermost first: the body is read before the routes, CORS answers preflights, headers go on every answer,
    # and Observe (outermost) counts every response, refusals and failures included
    app.add_middleware(BodyReader, max_body_bytes=MAX_BODY_BYTES, body_timeout_s=settings.body_timeout_s)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"], max_age=600)
    app.add_middleware(SecurityHeaders, csp=CSP)
    app.add_middleware(Observe, metrics=metrics)
    return app
