"""Checks of a composed config, run before anything heavy loads; each error names its key.

One function per stage: `validate_train` (also run by the Vertex launcher on every job of a sweep, with
`check_files=False`, then `check_data_files`), `validate_prepare` (+ `prepare_output` once the output is
needed) and `validate_evaluate`. Checks that belong to one part live beside it and are called from here
(`compression.validate_compression`, which holds the only `prune.amount` check).
"""

import os

from omegaconf import DictConfig, OmegaConf

from flavorfusion.compression import validate_compression
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import writable_parent


def _require(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value} {expected}")


def check_no_missing_values(cfg: DictConfig) -> None:
    """`???` left in the config (e.g. `data.path`) is named before anything runs."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing value (???); set it on the command line")


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
    batch_tokens = data.get("batch_tokens")
    _require(batch_tokens is None or batch_tokens >= data.max_source_length, "data.batch_tokens", batch_tokens,
             f"must be null or at least data.max_source_length={data.max_source_length}")
    columns = data.columns
    for key in ("id", "reviews"):
        _require(bool(columns.get(key)), f"data.columns.{key}", columns.get(key), "must name a column")


def _check_trainable_export(model: DictConfig) -> None:
    """A quantized export can be evaluated or served, not trained (W&B artifacts are checked once downloaded)."""
    from flavorfusion.models.quantized import refuse_for_training  # torch: imported only when a train runs

    path = model.get("name_or_path")
    if path and not model.get("wandb_artifact") and os.path.isdir(path):
        refuse_for_training(path, "model.name_or_path")


def check_data_files(data: DictConfig) -> list[str]:
    """The files `data.path` matches (local or gs://); none is an error naming the key and pattern."""
    from flavorfusion.io import expand_paths
    from flavorfusion.provenance import missing_input_hint

    paths = OmegaConf.to_container(data.path) if OmegaConf.is_config(data.path) else data.path
    try:
        return expand_paths(paths)
    except DataError as err:
        # inside a DVC pipeline, say which `dvc pull` or stage makes the missing input
        hints = [h for h in map(missing_input_hint, [paths] if isinstance(paths, str) else map(str, paths)) if h]
        raise DataError(f"data.path: {err}" + (f"; {hints[0]}" if hints else "")) from None


def validate_train(cfg: DictConfig, check_files: bool = True) -> None:
    """Every check `train` runs at start-up, before the model loads (the Vertex launcher runs it per job)."""
    check_no_missing_values(cfg)
    validate_data(cfg.data)
    _require(cfg.model.get("trainable", True), "model", cfg.model.get("_target_"),
             "is an extractive baseline: score it with `python -m flavorfusion.evaluate`, it has nothing to train")
    _require(cfg.model.get("attention", "hf") in ("hf", "flex"), "model.attention", cfg.model.get("attention"),
             "must be hf or flex")
    validate_compression(cfg.prune, cfg.quantize)
    _check_trainable_export(cfg.model)
    if str(cfg.trainer.get("precision")) in ("16-mixed", "16") and cfg.model.get("optimizer", {}).get("fused") \
            and cfg.trainer.get("gradient_clip_val"):
        raise ConfigError("model.optimizer.fused=true cannot be combined with gradient clipping under "
                          f"trainer.precision={cfg.trainer.precision} (the GradScaler unscales inside the fused "
                          "step): set model.optimizer.fused=false, or use bf16-mixed")
    if cfg.data.streaming:
        _require(cfg.trainer.get("max_steps", -1) > 0, "trainer.max_steps", cfg.trainer.get("max_steps"),
                 "must be set (> 0) with data.streaming=true: a stream has no length to count epochs by")
    if check_files:
        check_data_files(cfg.data)


def validate_prepare(cfg: DictConfig) -> None:
    """`python -m flavorfusion.prepare`: every `???` but `output` is set (a dry run writes nothing, so it needs
    no output; `prepare_output` checks it when it is needed)."""
    missing = [k for k in OmegaConf.missing_keys(cfg) if k != "output"]
    if missing:
        raise ConfigError(
            f"missing value for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=PATH"
        )


def prepare_output(cfg: DictConfig, directory: bool = False) -> str:
    """What `prepare` writes: set, and a file, or with `directory` (engine=beam's shards) a directory."""
    if OmegaConf.is_missing(cfg, "output"):
        raise ConfigError("missing value for output: set it on the command line, e.g. output=groups.parquet")
    output = str(cfg.output)
    if directory:  # `groups/` and `groups` are one directory, its report `groups.report.json` beside it
        output = output.rstrip("/") or output
    if not directory and os.path.isdir(output):
        raise ConfigError(f"output={output} is a directory; name a file, e.g. output={output}/groups.parquet")
    return output


SPLITS = ("validation", "all")


def validate_evaluate(cfg: DictConfig) -> None:
    """`python -m flavorfusion.evaluate`: the split is one `evaluation` knows."""
    _require(cfg.split in SPLITS, "split", cfg.split, f"must be one of {', '.join(SPLITS)}")


def validate_summarize(cfg: DictConfig) -> None:
    """`python -m flavorfusion.summarize`: values set, sizes positive, and an output that can be written (checked
    before the model loads or anything generates)."""
    check_no_missing_values(cfg)
    for key in ("batch_size", "part_size"):
        _require(cfg[key] > 0, key, cfg[key], "must be a positive integer")
    output = str(cfg.output)
    if os.path.isdir(output):
        raise ConfigError(f"output={output} is a directory: give a file path such as summaries.parquet")
    try:
        writable_parent(output)
    except DataError as err:
        raise ConfigError(f"output={output}: {err}") from None
