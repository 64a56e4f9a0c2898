"""`serve`: the HTTP server's own keys (the `serve:` node of conf/serve.yaml) -> `flavorfusion.serving`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from flavorfusion.config.model import ModelSource
from flavorfusion.config.schema import Schema, require

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass
class ServerConf(Schema):
    host: str = "127.0.0.1"  # 0.0.0.0 in a container
    port: int = 8080  # AIP_HTTP_PORT, else PORT, wins when set
    variants: dict[str, str] = field(default_factory=dict)  # name -> a model source, served beside `trained`
    max_batch_size: int = 8  # items (review lists) per generate call
    batch_timeout_ms: float = 20.0  # how long the first item of a batch waits for more
    max_queue: int = 64  # items waiting per variant; beyond it requests get 503 + Retry-After
    max_reviews: int = 100  # reviews per request (or per instance): more is a 413
    max_chars: int = 100_000  # characters per request (or per instance): more is a 413
    summaries: str | None = None  # a summarize output (Parquet) for the app page
    min_group_reviews: int = 3  # groups with fewer reviews show "not enough reviews" on the page
    log_level: str = "info"
    access_log: bool = False
    # connection limits (uvicorn + h11): a client may not hold the server with slow or idle connections
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    limit_concurrency: int = 256
    max_header_bytes: int = 16384
    # security: CORS origins allowed (none by default); the API key's source, never the key itself
    cors_origins: list[str] = field(default_factory=list)
    api_key_env: str | None = None
    api_key_secret: str | None = None  # projects/P/secrets/S/versions/V

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(0 < node.port < 65536, f"{key}.port", node.port, "must be in 1..65535")
        for name in ("max_batch_size", "max_queue", "max_reviews", "max_chars", "min_group_reviews", "header_timeout_s",
                     "body_timeout_s", "keep_alive_s", "limit_concurrency", "max_header_bytes"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be positive")
        for origin in node.cors_origins:
            require(bool(origin), f"{key}.cors_origins", list(node.cors_origins),
                    "must list origins, e.g. [https://example.com]")
        require(not (node.api_key_env and node.api_key_secret), f"{key}.api_key_secret", node.api_key_secret,
                f"and {key}.api_key_env are both set: give one")
        require(node.batch_timeout_ms >= 0, f"{key}.batch_timeout_ms", node.batch_timeout_ms, "must be 0 or more")
        require(node.log_level in LOG_LEVELS, f"{key}.log_level", node.log_level,
                f"must be one of {', '.join(LOG_LEVELS)}")
        for name, source in node.variants.items():
            require(name != "trained", f"{key}.variants.trained", source,
                    "is taken: `trained` is model.name_or_path; name the variant otherwise")
            ModelSource.parse(source, f"{key}.variants.{name}")
