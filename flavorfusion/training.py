"""The training stage: fine-tune a summarizer on review groups, export it (pruned, quantized) and report metrics.

`train(cfg)` runs the steps below in order; `python -m flavorfusion.train` calls it. Each step is one function:

    check    validate_train (before the model loads) and, on Vertex AI only, the cluster and secrets
    build    summarizer, datamodule, callbacks (+ pruning), loggers, trainer from `_target_` nodes
    fit      trainer.fit, resuming from `ckpt_path`
    best     reload the best checkpoint and name its score `best/<metric>`
    export   finalize pruning, save the fp export, upload it, quantize it
    report   metrics.json and, with `inference=true`, one generated summary beside its reference
"""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from flavorfusion import provenance, tracking
from flavorfusion.checks import check_model_limits, validate_train
from flavorfusion.compression import export_quantized_model, finalize_pruning, model_artifact_type
from flavorfusion.compression.measures import size_on_disk
from flavorfusion.errors import ConfigError
from flavorfusion.models.loading import save_pretrained
from flavorfusion.runs import instantiate_nodes, write_metrics
from flavorfusion.vertex_env import configure_on_vertex

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced, for callers and tests to inspect."""

    metrics: dict[str, float | str | None]  # floats, and `best_checkpoint`: its path, or None when none was scored
    summarizer: Any
    datamodule: Any
    trainer: L.Trainer
    export_dir: str | None = None
    objects: dict = field(default_factory=dict)


@dataclass
class Built:
    """The objects a run is made of, built from the config."""

    summarizer: Any
    datamodule: Any
    trainer: L.Trainer
    loggers: list


def train(cfg: DictConfig) -> TrainResult:
    check(cfg)
    built = build(cfg)
    try:
        result = _fit_and_export(cfg, built)
    except BaseException:
        tracking.finish_runs(built.loggers, exit_code=1)  # a failed sweep job must not leave its W&B run open
        raise
    tracking.finish_runs(built.loggers, exit_code=0)
    return result


def _fit_and_export(cfg: DictConfig, built: Built) -> TrainResult:
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    fit(cfg, built)
    metrics = best(built)
    export_dir, quantized_dir = export(cfg, built, metrics, config_yaml)
    metrics.update(export_sizes(export_dir, quantized_dir))
    report(cfg, built, metrics)
    return TrainResult(metrics, built.summarizer, built.datamodule, built.trainer, export_dir,
                       objects={"quantized_export_dir": quantized_dir})


# ---- check -------------------------------------------------------------------------------------------

def check(cfg: DictConfig) -> None:
    validate_train(cfg)  # before the model loads: a wrong data.path costs no download of the model
    configure_on_vertex()  # multi-node addresses and secrets, in a Vertex AI job only
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)  # "high": TF32 matmuls on Ampere+


# ---- build -------------------------------------------------------------------------------------------

# callbacks that raise at fit start when the Trainer has no logger
NEEDS_LOGGER = (LearningRateMonitor, DeviceStatsMonitor)


def drop_callbacks_needing_a_logger(callbacks: list, loggers: list) -> list:
    if loggers:
        return callbacks
    dropped = [type(cb).__name__ for cb in callbacks if isinstance(cb, NEEDS_LOGGER)]
    if dropped:
        log.info("no logger: leaving out %s", ", ".join(dropped))
    return [cb for cb in callbacks if not isinstance(cb, NEEDS_LOGGER)]


def build(cfg: DictConfig) -> Built:
    log.info("model <%s>", cfg.model._target_)
    summarizer = instantiate(cfg.model, _convert_="all", generation=cfg.generation)
    check_model_limits(cfg.data, summarizer.model.config)  # before the Trainer is built
    datamodule = instantiate(cfg.data, _convert_="all", tokenizer=summarizer.tokenizer,
                             attention_window=summarizer.attention_window)
    callbacks = instantiate_nodes(cfg.callbacks, "callbacks")
    if "_target_" in cfg.prune:
        callbacks.append(instantiate(cfg.prune))
    loggers = instantiate_nodes(cfg.logger, "logger")
    callbacks = drop_callbacks_needing_a_logger(callbacks, loggers)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Built(summarizer, datamodule, trainer, loggers)


# ---- fit ---------------------------------------------------------------------------------------------

def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` resumes from the run's own last.ckpt when it exists (spot VM restarts)."""
    if cfg.ckpt_path != "last":
        return cfg.ckpt_path
    last = os.path.join(cfg.paths.checkpoint_dir, "last.ckpt")
    return last if os.path.exists(last) else None


def fit(cfg: DictConfig, built: Built) -> None:
    for logger in built.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    built.trainer.fit(built.summarizer, datamodule=built.datamodule, ckpt_path=resolve_ckpt_path(cfg))


# ---- best --------------------------------------------------------------------------------------------

def load_best_weights(trainer: L.Trainer, summarizer) -> str | None:
    """Reload the best checkpoint, if one was scored (no validation or no checkpoint callback: none)."""
    callback = trainer.checkpoint_callback
    if callback is None or not callback.best_model_path or callback.best_model_score is None:
        return None
    state = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    summarizer.load_state_dict(state)
    return callback.best_model_path


def best(built: Built) -> dict[str, float | str | None]:
    """The run's last metrics, plus `best_checkpoint` and `best/<metric>` once the best weights are reloaded."""
    trainer = built.trainer
    metrics: dict[str, float | str | None] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    path = load_best_weights(trainer, built.summarizer)
    metrics["best_checkpoint"] = path
    if path:
        callback = trainer.checkpoint_callback
        metrics["best/" + callback.monitor.split("/")[-1]] = float(callback.best_model_score)
        log.info("best checkpoint %s (%s %.4f)", path, callback.monitor, callback.best_model_score)
    else:
        log.info("no best checkpoint (no validation score or no checkpoint callback): exporting the last weights")
    return metrics


# ---- export ------------------------------------------------------------------------------------------

def export(cfg: DictConfig, built: Built, metrics: dict, config_yaml: str) -> tuple[str | None, str | None]:
    """Finalize pruning, then (with `export=true`, on rank 0) save the fp export, upload it as a W&B artifact
    and quantize it. Returns (fp export dir, quantized export dir)."""
    summarizer, trainer = built.summarizer, built.trainer
    finalize_pruning(trainer, summarizer.model)  # structured pruning shrinks its layers here
    if not (cfg.export and trainer.is_global_zero):
        return None, None
    export_dir = save_pretrained(summarizer.model, summarizer.tokenizer, cfg.paths.export_dir, config_yaml)
    log.info("exported model to %s", export_dir)
    # the DVC data version of data.path (dvc.lock / .dvc files): model/data_version.json + every logger's config
    provenance.record(cfg.data.get("path"), export_dir, built.loggers)
    upload_export(cfg, built.loggers, export_dir, metrics)
    quantized_dir = export_quantized_model(cfg.quantize, export_dir, built.loggers, metrics, config_yaml)
    return export_dir, quantized_dir


def export_sizes(export_dir: str | None, quantized_dir: str | None) -> dict[str, float]:
    """`model/size_mb`: MB of weights of the export that would be served (the quantized one when there is one),
    what a study trades ROUGE against; `model/fp_size_mb`: the fp export's."""
    if export_dir is None:
        return {}
    sizes = {"model/fp_size_mb": size_on_disk(export_dir) / 1e6}
    sizes["model/size_mb"] = size_on_disk(quantized_dir) / 1e6 if quantized_dir else sizes["model/fp_size_mb"]
    return sizes


def upload_export(cfg: DictConfig, loggers: list, export_dir: str, metrics: dict) -> None:
    """The fp export as a `model` (or `pruned_model`) W&B artifact, for each logger that asks for artifacts."""
    artifact_type = model_artifact_type(cfg.prune)
    for logger in loggers:
        if getattr(logger, "log_model_artifact", False):
            tracking.log_model_artifact(logger, export_dir, name=f"{artifact_type}-{logger.experiment.id}",
                                        artifact_type=artifact_type, metadata=metrics)


# ---- the value a sweeper optimizes -------------------------------------------------------------------

def objective(metrics: dict, optimized_metric: str | list | None) -> float | list[float] | None:
    """What `python -m flavorfusion.train` returns: the float named by `optimized_metric`, or, when it is a list
    (a multi-objective study), the list of those floats in its order; None when it is null."""
    if optimized_metric is None:
        return None
    names = [optimized_metric] if isinstance(optimized_metric, str) else list(optimized_metric)
    missing = [n for n in names if not isinstance(metrics.get(n), (int, float))]
    if missing:
        available = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
        raise ConfigError(f"optimized_metric: {missing[0]!r} is not a metric of this run (it has: {available})")
    values = [float(metrics[n]) for n in names]
    return values[0] if isinstance(optimized_metric, str) else values


# ---- report ------------------------------------------------------------------------------------------

def print_sample(summarizer, datamodule) -> None:
    """The original --inference: one generated summary beside its reference."""
    batch = datamodule.collator([datamodule.val_set[0]] if not datamodule.hparams.streaming
                                else [next(iter(datamodule.val_set))])
    generated = summarizer.generate(batch)  # generate_ids moves the inputs to the model's device
    print(f"\n[{batch['id'][0]}]\ngenerated: {generated[0]}\nreference: {batch['summary'][0][0]}\n")


def report(cfg: DictConfig, built: Built, metrics: dict) -> None:
    """metrics.json in the run's output dir and, with `inference=true`, one sample (rank 0 only)."""
    if not built.trainer.is_global_zero:
        return
    write_metrics(metrics, os.path.join(cfg.paths.output_dir, "metrics.json"))
    log.info("metrics: %s", json.dumps(metrics, sort_keys=True))
    if cfg.inference:
        print_sample(built.summarizer, built.datamodule)
