"""The HTTP app: `create_app` assembles the variants' registry, the telemetry, the restaurant catalog (on
`app.state`), the middleware, one error shape and the routes (`serving.routes`), and serves the page's static
assets (`serving/static/`).

Every refusal is a 4xx (503 when busy or still loading, with `Retry-After`) with a one-line JSON body
`{"error": "..."}`; no route answers with a stack trace; a failure is a JSON 500, counted in /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from flavorfusion.config.serve import ServerConf
from flavorfusion.serving import routes
from flavorfusion.serving.catalog import Catalog
from flavorfusion.serving.errors import EXAMPLES, ApiError, ClientGone, error_response, validation_message
from flavorfusion.serving.middleware import BodyReader, Observe, SecurityHeaders
from flavorfusion.serving.registry import VariantRegistry
from flavorfusion.serving.telemetry import Telemetry
from flavorfusion.serving.variants import LoadedModel, VariantSource

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_500_000  # Vertex AI's request limit (1.5 MB)
# the page's script and style are files of this server; nothing else runs, loads or frames it
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HTTP_STATUS_WORDS = {404: "no such route on this server (see /openapi.json)",
                     405: "this route does not take that method (see /openapi.json)"}


def create_app(sources: list[VariantSource], loader: Callable[[VariantSource], LoadedModel],
               server: ServerConf | None = None, *, api_key: str | None = None, predict_route: str = "/predict",
               health_route: str = "/healthz", catalog: Catalog | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving `sources` (the first is the default variant) with the limits of `server` (the `serve:` node
    of conf/serve.yaml). `loader` runs once per variant, in a thread, after the server starts listening: health
    answers 503 until every variant is loaded."""
    server = server or ServerConf()
    telemetry = Telemetry()
    registry = VariantRegistry(sources, server, telemetry)

    async def load_all() -> None:
        try:
            for variant in registry:  # one at a time: peak memory is one model's
                loaded = await asyncio.to_thread(loader, variant.source)
                variant.loaded, variant.loads = loaded, variant.loads + 1
                telemetry.model_loads.labels(variant.source.name).inc()
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
    app.state.server, app.state.api_key, app.state.telemetry, app.state.variants = server, api_key, telemetry, registry
    app.state.catalog = catalog or Catalog.empty(server.min_group_reviews)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, err: ClientGone):
        return Response(status_code=499)  # nobody reads it: counted in /metrics as a client that left

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, HTTP_STATUS_WORDS.get(err.status_code, err.detail),
                              getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        example = EXAMPLES["/summarize"] if request.url.path == "/summarize" else EXAMPLES["predict"]
        return error_response(400, validation_message(err, example))

    app.include_router(routes.router)
    # Vertex AI names these two routes (AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE)
    app.add_api_route(predict_route, routes.predict, methods=["POST"], **routes.PREDICT)
    app.add_api_route(health_route, routes.health, methods=routes.GET, **routes.HEALTH)
    app.mount("/static", StaticFiles(directory=str(resources.files("flavorfusion.serving").joinpath("static"))),
              name="static")

    # innermost first: the body is read before the routes, CORS answers preflights, headers go on every answer,
    # and Observe (outermost) counts every response, refusals and failures included
    app.add_middleware(BodyReader, max_body_bytes=MAX_BODY_BYTES, body_timeout_s=server.body_timeout_s)
    if server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(server.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"], max_age=600)
    app.add_middleware(SecurityHeaders, csp=CSP)
    app.add_middleware(Observe, telemetry=telemetry, routed_app=app, max_header_bytes=server.max_header_bytes)
    return app
