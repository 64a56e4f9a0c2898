"""`source`: the raw data `prepare` reads (conf/source/*.yaml) -> `flavorfusion.data.sources`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig

from flavorfusion.config.schema import Schema, require


@dataclass
class LanguageIdConf(Schema):
    _target_: str = "flavorfusion.data.sources.language_id.LanguageIdentifier"
    languages: list[str] | None = None  # ISO 639-1 codes lingua may answer with; null: all it knows
    low_accuracy: bool = False

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.languages is None or len(node.languages) >= 2, f"{key}.languages", node.languages,
                "needs at least two languages (or null for all)")


@dataclass
class GoogleLocalConf(Schema):
    _target_: str = "flavorfusion.data.sources.google_local.GoogleLocalSource"
    reviews: Any = MISSING  # a path, a glob or a list of them
    meta: Any = MISSING
    min_chars: int = 20
    max_chars: int = 5000
    max_reviews_per_business: int | None = 100
    language_id: LanguageIdConf | None = field(default_factory=LanguageIdConf)
    categories: list[str] = field(default_factory=list)

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(len(node.categories) > 0, f"{key}.categories", "[]", "is empty: no business could count as a restaurant")
        require(0 <= node.min_chars < node.max_chars, f"{key}.min_chars", node.min_chars,
                f"must be in [0, {key}.max_chars={node.max_chars})")
        cap = node.max_reviews_per_business
        require(cap is None or cap > 0, f"{key}.max_reviews_per_business", cap, "must be positive (or null for no cap)")


@dataclass
class LsarsConf(Schema):
    _target_: str = "flavorfusion.data.sources.lsars.LsarsSource"
    path: Any = MISSING  # a path, a glob or a list of them
    start_line: int = 0
    stop_line: int | None = None
    chunk_size: int = 1000

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.start_line >= 0, f"{key}.start_line", node.start_line, "must be 0 or more")
        require(node.stop_line is None or node.stop_line > node.start_line, f"{key}.stop_line", node.stop_line,
                f"must be above {key}.start_line={node.start_line} (or null: to the end)")
        require(node.chunk_size > 0, f"{key}.chunk_size", node.chunk_size, "must be a positive integer")
