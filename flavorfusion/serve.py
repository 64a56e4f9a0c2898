"""`python -m flavorfusion.serve`: serve exports over HTTP, each loaded once per process (docs/serving.md).

    python -m flavorfusion.serve model.name_or_path=outputs/.../model serve.port=8080
    python -m flavorfusion.serve model.name_or_path=DIR 'serve.variants={int8: DIR_INT8}' serve.summaries=summaries.parquet

The entry point composes the config, picks the port (Vertex AI's AIP_HTTP_PORT, else Cloud Run's PORT, else
serve.port) and the routes, and runs uvicorn; the app is `flavorfusion.serving.app`.
"""

import logging
import os
import sys

from omegaconf import DictConfig

from flavorfusion.checks import validate_serve
from flavorfusion.errors import FlavorFusionError
from flavorfusion.runs import hydra_entry_point
from flavorfusion.serving.app import Settings, create_app
from flavorfusion.serving.page import Catalog
from flavorfusion.serving.variants import load_variant, variant_sources

log = logging.getLogger(__name__)


def port_of(cfg: DictConfig) -> int:
    for key in ("AIP_HTTP_PORT", "PORT"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(cfg.serve.port)


@hydra_entry_point("serve")
def main(cfg: DictConfig) -> None:
    import uvicorn

    validate_serve(cfg)
    sources = variant_sources(cfg)
    s = cfg.serve
    catalog = Catalog.from_parquet(s.summaries, s.min_group_reviews) if s.summaries else None
    settings = Settings(max_batch_size=s.max_batch_size, batch_timeout_ms=s.batch_timeout_ms, max_queue=s.max_queue,
                        max_reviews=s.max_reviews, max_chars=s.max_chars,
                        predict_route=os.environ.get("AIP_PREDICT_ROUTE") or "/predict",
                        health_route=os.environ.get("AIP_HEALTH_ROUTE") or "/healthz")
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        server.should_exit = True  # stop serving: a server without its model only answers 503

    app = create_app(sources, lambda source: load_variant(source, cfg), settings, catalog, on_load_error)
    port = port_of(cfg)
    server = uvicorn.Server(uvicorn.Config(app, host=s.host, port=port, log_level=s.log_level,
                                           access_log=s.access_log, timeout_graceful_shutdown=5))
    log.info("serving %s on http://%s:%d (predict %s, health %s)", ", ".join(x.name for x in sources), s.host,
             port, settings.predict_route, settings.health_route)
    server.run()
    if failed:
        if isinstance(failed[0], FlavorFusionError):
            raise failed[0]
        print(f"error: loading a model failed: {type(failed[0]).__name__}: {failed[0]}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
