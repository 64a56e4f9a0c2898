"""`run(cfg)`: the server of `python -m flavorfusion.serve`: the variants, the page's catalog, the API key, the
routes Vertex AI names, and uvicorn with the connection limits of `conf/serve.yaml`."""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig

from flavorfusion.checks import validate_serve
from flavorfusion.errors import FlavorFusionError
from flavorfusion.serving.app import Settings, create_app
from flavorfusion.serving.limits import h11_protocol
from flavorfusion.serving.page import Catalog
from flavorfusion.serving.security import resolve_api_key
from flavorfusion.serving.variants import load_variant, variant_sources

log = logging.getLogger(__name__)

def port_of(cfg: DictConfig) -> int:
    for key in ("AIP_HTTP_PORT", "PORT"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(cfg.serve.port)


def run(cfg: DictConfig) -> None:
    import uvicorn

    validate_serve(cfg)  # schema ranges (flavorfusion.config.serve) and the summaries file
    s = cfg.serve
    sources = variant_sources(cfg)
    catalog = Catalog.from_parquet(s.summaries, s.min_group_reviews) if s.summaries else None
    settings = Settings(max_batch_size=s.max_batch_size, batch_timeout_ms=s.batch_timeout_ms, max_queue=s.max_queue,
                        max_reviews=s.max_reviews, max_chars=s.max_chars, body_timeout_s=s.body_timeout_s,
                        cors_origins=list(s.cors_origins or []),
                        api_key=resolve_api_key(s.get("api_key_env"), s.get("api_key_secret")),
                        predict_route=os.environ.get("AIP_PREDICT_ROUTE") or "/predict",
                        health_route=os.environ.get("AIP_HEALTH_ROUTE") or "/healthz")
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        server.should_exit = True  # stop serving: a server without its model only answers 503

    app = create_app(sources, lambda source: load_variant(source, cfg), settings, catalog, on_load_error)
    port = port_of(cfg)
    server = uvicorn.Server(uvicorn.Config(
        app, host=s.host, port=port, log_level=s.log_level, access_log=s.access_log, timeout_graceful_shutdown=5,
        http=h11_protocol(s.header_timeout_s), timeout_keep_alive=s.keep_alive_s,
        limit_concurrency=s.limit_concurrency, h11_max_incomplete_event_size=s.max_header_bytes))
    log.info("serving %s on http://%s:%d (predict %s, health %s%s%s)", ", ".join(x.name for x in sources), s.host,
             port, settings.predict_route, settings.health_route, ", API key required" if settings.api_key else "",
             f", CORS for {', '.join(settings.cors_origins)}" if settings.cors_origins else "")
    server.run()
    if failed:
        if isinstance(failed[0], FlavorFusionError):
            raise failed[0]
        print(f"error: loading a model failed: {type(failed[0]).__name__}: {failed[0]}", file=sys.stderr)
        raise SystemExit(1)
