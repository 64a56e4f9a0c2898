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

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(0 < node.port < 65536, f"{key}.port", node.port, "must be in 1..65535")
        for name in ("max_batch_size", "max_queue", "max_reviews", "max_chars", "min_group_reviews"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        require(node.batch_timeout_ms >= 0, f"{key}.batch_timeout_ms", node.batch_timeout_ms, "must be 0 or more")
        require(node.log_level in LOG_LEVELS, f"{key}.log_level", node.log_level,
                f"must be one of {', '.join(LOG_LEVELS)}")
        for name, source in node.variants.items():
            require(name != "trained", f"{key}.variants.trained", source,
                    "is taken: `trained` is model.name_or_path; name the variant otherwise")
            ModelSource.parse(source, f"{key}.variants.{name}")
