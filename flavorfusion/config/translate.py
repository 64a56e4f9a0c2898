"""`translate`: translation of prepared texts (conf/translate/*.yaml) -> `flavorfusion.data.translate`."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require


@dataclass
class NoTranslationConf(Schema):
    _target_: str = "flavorfusion.data.translate.NoTranslation"


@dataclass
class GoogleTranslateConf(Schema):
    _target_: str = "flavorfusion.data.translate.GoogleTranslator"
    project_id: str | None = None  # null: $GOOGLE_CLOUD_PROJECT
    location: str = "global"
    target_language: str = "en"
    source_language: str | None = None
    model: str | None = None
    cache_path: str = "~/.cache/flavorfusion/translations.sqlite"
    batch_size: int = 128
    max_chars_per_request: int = 30000
    dry_run: bool = False
    price_per_million_chars: float = 20.0
    timeout_s: float = 60.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_deadline_s: float = 600.0

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        for name in ("batch_size", "max_chars_per_request", "timeout_s", "backoff_initial_s", "retry_deadline_s"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be positive")
        require(node.backoff_max_s >= node.backoff_initial_s, f"{key}.backoff_max_s", node.backoff_max_s,
                f"must be at least {key}.backoff_initial_s={node.backoff_initial_s}")
        require(node.price_per_million_chars >= 0, f"{key}.price_per_million_chars", node.price_per_million_chars,
                "must be 0 or more")
