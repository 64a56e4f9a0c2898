"""`serve`: the HTTP server's own keys (the `serve:` node of conf/serve.yaml) -> `flavorfusion.serving`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from omegaconf import DictConfig

from flavorfusion.config.model import ModelSource
from flavorfusion.config.schema import Schema, require

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass
class ServerConf(Schema):
    """The server's keys; conf/serve.yaml says what each one does."""

    host: str = "127.0.0.1"
    port: int = 8080
    variants: dict[str, str] = field(default_factory=dict)
    max_batch_size: int = 8
    batch_timeout_ms: float = 20.0
    max_queue: int = 64
    max_reviews: int = 100
    max_chars: int = 100_000
    summaries: str | None = None
    min_group_reviews: int = 3
    log_level: str = "info"
    access_log: bool = False
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_connections: int = 256
    max_header_bytes: int = 16384
    cors_origins: list[str] = field(default_factory=list)
    api_key_env: str | None = None
    api_key_secret: str | None = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        known = {f.name for f in fields(cls)}
        for name in node:  # `+serve.x=...` adds keys Hydra's schema would refuse without the `+`
            require(name in known, f"{key}.{name}", node[name] if "key" not in str(name) else "***",
                    f"is not a key of {key} (its keys: {', '.join(sorted(known))})")
        require(0 < node.port < 65536, f"{key}.port", node.port, "must be in 1..65535")
        for name in ("max_batch_size", "max_queue", "max_reviews", "max_chars", "min_group_reviews", "header_timeout_s",
                     "body_timeout_s", "keep_alive_s", "max_connections", "max_header_bytes"):
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
