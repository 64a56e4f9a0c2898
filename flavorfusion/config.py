"""Checks of a composed config, run before anything heavy loads; each error names its key."""

from omegaconf import DictConfig

from flavorfusion.compression import validate_compression
from flavorfusion.errors import ConfigError


def _require(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value} {expected}")


def validate_data(data: DictConfig) -> None:
    _require(0 < data.test_ratio < 1, "data.test_ratio", data.test_ratio, "must be in (0, 1)")
    for key in ("max_source_length", "max_target_length", "batch_size", "max_docs_per_review"):
        _require(data[key] is not None and data[key] > 0, f"data.{key}", data[key], "must be a positive integer")
    k = data.k_top_longest
    _require(k is None or k > 0, "data.k_top_longest", k, "must be a positive integer or null")
    if k is not None:
        _require(data.max_docs_per_review <= k, "data.max_docs_per_review", data.max_docs_per_review,
                 f"must not exceed data.k_top_longest={k}")
    _require(data.subset is None or data.subset > 0, "data.subset", data.subset, "must be a positive integer or null")
    columns = data.columns
    for key in ("id", "reviews"):
        _require(bool(columns.get(key)), f"data.columns.{key}", columns.get(key), "must name a column")


def validate_train(cfg: DictConfig) -> None:
    validate_data(cfg.data)
    amount = cfg.prune.get("amount", 0.0)
    _require(0 <= amount < 1, "prune.amount", amount, "must be in [0, 1)")
    _require(cfg.model.get("trainable", True), "model", cfg.model.get("_target_"),
             "is an extractive baseline: score it with `python -m flavorfusion.evaluate`, it has nothing to train")
    validate_compression(cfg.prune, cfg.quantize)
    if cfg.data.streaming:
        _require(cfg.trainer.get("max_steps", -1) > 0, "trainer.max_steps", cfg.trainer.get("max_steps"),
                 "must be set (> 0) with data.streaming=true: a stream has no length to count epochs by")
