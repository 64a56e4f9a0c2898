"""`data`: review groups from a table (conf/data/*.yaml) -> `flavorfusion.data.datamodule.ReviewGroupDataModule`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig

from flavorfusion.config.schema import Schema, require

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")


# the original code's CSV joins a group's reviews in one cell with this (and its Cloud Functions' `?text=`)
REVIEW_SEPARATOR = "|||||"

@dataclass
class ColumnsConf(Schema):
    id: str = "id"
    reviews: Any = "review_str"  # one column (split on review_separator) or a list of columns
    summary: Any = "summary"  # one column, a list (several references), or null for unlabeled data

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        for name in ("id", "reviews"):
            require(bool(node[name]), f"{key}.{name}", node[name], "must name a column")


@dataclass
class DataConf(Schema):
    _target_: str = "flavorfusion.data.datamodule.ReviewGroupDataModule"
    path: Any = MISSING  # a path, a glob or a list of them; local or gs://
    format: str | None = None
    columns: ColumnsConf = field(default_factory=ColumnsConf)
    review_separator: str = REVIEW_SEPARATOR
    streaming: bool = False
    shuffle_buffer: int = 1000
    test_ratio: float = 0.1
    seed: int = 42
    subset: int | None = None
    k_top_longest: int | None = 20
    max_docs_per_review: int = 5
    max_source_length: int = 4096
    max_target_length: int = 1024
    train_on_all_references: bool = True
    batch_size: int = 1
    eval_batch_size: int | None = None
    batch_tokens: int | None = None
    group_by_length: bool = False
    pad_to_multiple_of: int | None = None
    num_proc: int | None = None
    num_workers: int = 0
    storage_options: dict[str, Any] | None = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(0 < node.test_ratio < 1, f"{key}.test_ratio", node.test_ratio, "must be in (0, 1)")
        for name in ("max_source_length", "max_target_length", "batch_size", "max_docs_per_review", "shuffle_buffer"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        for name in ("eval_batch_size", "subset", "pad_to_multiple_of", "num_proc"):
            require(node[name] is None or node[name] > 0, f"{key}.{name}", node[name],
                    "must be a positive integer or null")
        require(node.num_workers >= 0, f"{key}.num_workers", node.num_workers, "must be 0 or more")
        require(node.format is None or node.format in FORMATS, f"{key}.format", node.format,
                f"must be null (from the suffix) or one of {', '.join(FORMATS)}")
        k = node.k_top_longest
        require(k is None or k > 0, f"{key}.k_top_longest", k, "must be a positive integer or null")
        if k is not None:
            require(node.max_docs_per_review <= k, f"{key}.max_docs_per_review", node.max_docs_per_review,
                    f"must not exceed {key}.k_top_longest={k}")
        batch_tokens = node.batch_tokens
        require(batch_tokens is None or batch_tokens >= node.max_source_length, f"{key}.batch_tokens", batch_tokens,
                f"must be null or at least {key}.max_source_length={node.max_source_length}")
