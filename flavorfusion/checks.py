"""Start-up checks of a composed config, run before anything heavy loads; each error names its key.

Types, unknown keys and value ranges belong to the schemas (`flavorfusion.config`): `check_config` runs them. What
stays here needs the outside world: files that must exist or be writable, packages a chosen backend needs, what
an export on disk is. One function per stage: `validate_train` (also run by the Vertex launcher on every job of a
sweep, with `check_files=False`, then `check_data_files`), `validate_prepare` (+ `prepare_output` once the output is
needed), `validate_evaluate`, `validate_summarize` and `validate_serve`.
"""

import os

from omegaconf import DictConfig, OmegaConf

from flavorfusion.config import check_config
from flavorfusion.config.model import ModelSource
from flavorfusion.config.schema import missing_keys
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import writable_parent


def check_no_missing_values(cfg: DictConfig) -> None:
    """`???` left in the config (e.g. `data.path`) is named before anything runs."""
    missing = sorted(missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing value (???); set it on the command line")


def _check_trainable_export(model: DictConfig) -> None:
    """A quantized export can be evaluated or served, not trained (W&B artifacts are checked once downloaded)."""
    from flavorfusion.models.quantized import refuse_for_training  # torch: imported only when a train runs

    if "name_or_path" not in model:
        return
    source = ModelSource.parse(model.name_or_path, "model.name_or_path")
    if source.kind == "local" and os.path.isdir(source.location):
        refuse_for_training(source.location, "model.name_or_path")


def check_quantize_backend(quantize: DictConfig) -> None:
    """The package the chosen quantization method needs is installed."""
    from flavorfusion.compression.quantization import check_backend

    check_backend(quantize.method)


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
    check_config(cfg)
    check_quantize_backend(cfg.quantize)
    _check_trainable_export(cfg.model)
    if check_files:
        check_data_files(cfg.data)


def check_model_limits(data: DictConfig, model_config) -> None:
    """Training lengths the loaded model can take: `data.max_source_length` within its encoder positions (rounded
    down to its attention window), `data.max_target_length` within its decoder positions."""
    from flavorfusion.models.loading import source_limit, target_limit

    for key, limit, what in (("max_source_length", source_limit(model_config), "encoder positions"),
                             ("max_target_length", target_limit(model_config), "decoder positions")):
        if data[key] > limit:
            raise ConfigError(f"data.{key}={data[key]} is more than the model takes ({limit} {what}): set "
                              f"data.{key}={limit} or less")


def validate_prepare(cfg: DictConfig) -> None:
    """`python -m flavorfusion.prepare`: every `???` but `output` is set (a dry run writes nothing, so it needs
    no output; `prepare_output` checks it when it is needed), and every value in range."""
    missing = [k for k in missing_keys(cfg) if k != "output"]
    if missing:
        raise ConfigError(
            f"missing value for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=PATH"
        )
    check_config(cfg)


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


def validate(cfg: DictConfig) -> None:
    """Every value set and in range, before anything loads: all `evaluate` and `summarize` check before they start;
    the other stages check this and more (`validate_train`, `validate_prepare`, `validate_serve`)."""
    check_no_missing_values(cfg)
    check_config(cfg)


def check_summarize_output(cfg: DictConfig, directory: bool) -> None:
    """An output summarize can write: a file path (engine=local), or a directory (`directory`: an engine that writes
    shards, which checks the directory itself before its job starts)."""
    output = str(cfg.output)
    if directory:
        if cfg.data.get("subset"):
            raise ConfigError(f"data.subset={cfg.data.subset} is engine=local only: workers read whole files")
        return
    if os.path.isdir(output):
        raise ConfigError(f"output={output} is a directory: give a file path such as summaries.parquet")
    try:
        writable_parent(output)
    except DataError as err:
        raise ConfigError(f"output={output}: {err}") from None


def validate_serve(cfg: DictConfig) -> None:
    """`python -m flavorfusion.serve`: values in range and a summaries file that exists."""
    check_config(cfg)
    summaries = cfg.serve.summaries
    if summaries and not str(summaries).startswith("gs://") and not os.path.exists(summaries):
        raise ConfigError(f"serve.summaries={summaries} does not exist: give a `python -m flavorfusion.summarize` output")
