"""`serve(cfg)`: the server of `python -m flavorfusion.serve`: the variants, the page's catalog, the API key, the
routes Vertex AI names, and uvicorn with the connection layer of `serving/connections.py`."""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig

from flavorfusion.checks import validate_serve
from flavorfusion.config.schema import as_schema
from flavorfusion.config.serve import ServerConf
from flavorfusion.errors import FlavorFusionError
from flavorfusion.serving.app import create_app
from flavorfusion.serving.catalog import Catalog
from flavorfusion.serving.connections import RedactQueryStrings, protocol
from flavorfusion.serving.security import resolve_api_key
from flavorfusion.serving.variants import load_variant, variant_sources

log = logging.getLogger(__name__)


def port_of(cfg: DictConfig) -> int:
    for key in ("AIP_HTTP_PORT", "PORT"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(cfg.serve.port)


def serve(cfg: DictConfig) -> None:
    import uvicorn

    validate_serve(cfg)  # schema ranges (flavorfusion.config.serve) and the summaries file
    server_conf = as_schema(cfg.serve, ServerConf)
    sources = variant_sources(cfg)
    catalog = Catalog.from_parquet(server_conf.summaries, server_conf.min_group_reviews) if server_conf.summaries \
        else None
    api_key = resolve_api_key(server_conf.api_key_env, server_conf.api_key_secret)
    predict_route = os.environ.get("AIP_PREDICT_ROUTE") or "/predict"
    health_route = os.environ.get("AIP_HEALTH_ROUTE") or "/healthz"
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        server.should_exit = True  # stop serving: a server without its model only answers 503

    app = create_app(sources, lambda source: load_variant(source, cfg), server_conf, api_key=api_key,
                     predict_route=predict_route, health_route=health_route, catalog=catalog,
                     on_load_error=on_load_error)
    port = port_of(cfg)
    logging.getLogger("uvicorn.access").addFilter(RedactQueryStrings())
    server = uvicorn.Server(uvicorn.Config(
        app, host=server_conf.host, port=port, log_level=server_conf.log_level, access_log=server_conf.access_log,
        timeout_graceful_shutdown=5, timeout_keep_alive=server_conf.keep_alive_s, limit_concurrency=None,
        http=protocol(server_conf.header_timeout_s, server_conf.max_connections, app.state.telemetry),
        h11_max_incomplete_event_size=server_conf.max_header_bytes))
    url = f"http://{server_conf.host}:{port}"
    log.info("serving %s on %s: the app at %s/app (predict %s, health %s%s%s)", ", ".join(x.name for x in sources),
             url, url, predict_route, health_route, ", API key required" if api_key else "",
             f", CORS for {', '.join(server_conf.cors_origins)}" if server_conf.cors_origins else "")
    server.run()
    if failed:
        if isinstance(failed[0], FlavorFusionError):
            raise failed[0]
        print(f"error: loading a model failed: {type(failed[0]).__name__}: {failed[0]}", file=sys.stderr)
        raise SystemExit(1)
