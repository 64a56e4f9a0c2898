"""`python -m flavorfusion.train`: fine-tune a summarizer on review groups (Hydra + Lightning)."""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from flavorfusion.cluster import configure_from_vertex_env
from flavorfusion.compression import export_quantized_model, finalize_pruning, model_artifact_type
from flavorfusion.config import validate_train
from flavorfusion.errors import exit_on_user_error
from flavorfusion.models.loading import save_pretrained

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


def instantiate_nodes(nodes: DictConfig | None) -> list:
    """Instantiate a dict of `_target_` nodes; a null node (e.g. `callbacks.x=null`) is left out."""
    return [instantiate(node) for node in (nodes or {}).values() if node is not None and "_target_" in node]


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` resumes from the run's own last.ckpt when it exists (spot VM restarts)."""
    if cfg.ckpt_path != "last":
        return cfg.ckpt_path
    last = os.path.join(cfg.paths.checkpoint_dir, "last.ckpt")
    return last if os.path.exists(last) else None


# callbacks that raise at fit start when the Trainer has no logger
NEEDS_LOGGER = (LearningRateMonitor, DeviceStatsMonitor)


def drop_callbacks_needing_a_logger(callbacks: list, loggers: list) -> list:
    if loggers:
        return callbacks
    dropped = [type(cb).__name__ for cb in callbacks if isinstance(cb, NEEDS_LOGGER)]
    if dropped:
        log.info("no logger: leaving out %s", ", ".join(dropped))
    return [cb for cb in callbacks if not isinstance(cb, NEEDS_LOGGER)]


def load_best_weights(trainer: L.Trainer, summarizer) -> str | None:
    """Reload the best checkpoint, if one was scored (no validation or no checkpoint callback: none)."""
    callback = trainer.checkpoint_callback
    if callback is None or not callback.best_model_path or callback.best_model_score is None:
        return None
    state = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    summarizer.load_state_dict(state)
    return callback.best_model_path


def write_metrics(metrics: dict[str, float], path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def print_sample(summarizer, datamodule) -> None:
    """The original --inference: one generated summary beside its reference."""
    batch = datamodule.collator([datamodule.val_set[0]] if not datamodule.hparams.streaming
                                else [next(iter(datamodule.val_set))])
    generated = summarizer.generate({k: v.to(summarizer.device) for k, v in batch.items() if torch.is_tensor(v)})
    print(f"\n[{batch['id'][0]}]\ngenerated: {generated[0]}\nreference: {batch['references'][0][0]}\n")


def train(cfg: DictConfig) -> TrainResult:
    validate_train(cfg)  # before the model loads: a wrong data.path costs no 1.8 GB download
    configure_from_vertex_env()  # multi-node addresses and secrets on Vertex AI; no-op elsewhere
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)  # "high": TF32 matmuls on Ampere+

    log.info("model <%s>", cfg.model._target_)
    summarizer = instantiate(cfg.model, _convert_="all")
    datamodule = instantiate(cfg.data, _convert_="all", tokenizer=summarizer.tokenizer,
                             attention_window=summarizer.attention_window)
    callbacks = instantiate_nodes(cfg.callbacks)
    if "_target_" in cfg.prune:
        callbacks.append(instantiate(cfg.prune))
    loggers = instantiate_nodes(cfg.logger)
    callbacks = drop_callbacks_needing_a_logger(callbacks, loggers)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    try:
        result = _fit_and_export(cfg, summarizer, datamodule, trainer, loggers)
    except BaseException:
        finish_wandb(loggers, exit_code=1)  # a failed sweep job must not leave its W&B run open
        raise
    finish_wandb(loggers, exit_code=0)
    return result


def finish_wandb(loggers: list, exit_code: int) -> None:
    """Flush and close W&B runs, so the next run in this process starts afresh."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=exit_code)


def _fit_and_export(cfg: DictConfig, summarizer, datamodule, trainer: L.Trainer, loggers: list) -> TrainResult:
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(summarizer, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = load_best_weights(trainer, summarizer)
    metrics["best_checkpoint"] = best
    if best:
        score = trainer.checkpoint_callback.best_model_score
        metrics["best/" + trainer.checkpoint_callback.monitor.split("/")[-1]] = float(score)
        log.info("best checkpoint %s (%s %.4f)", best, trainer.checkpoint_callback.monitor, score)
    else:
        log.info("no best checkpoint (no validation score or no checkpoint callback): exporting the last weights")
    finalize_pruning(trainer, summarizer.model)  # structured pruning shrinks its layers here
    export_dir = quantized_dir = None
    if cfg.export and trainer.is_global_zero:
        export_dir = save_pretrained(summarizer.model, summarizer.tokenizer, cfg.paths.export_dir, config_yaml)
        log.info("exported model to %s", export_dir)
        for logger in loggers:
            if getattr(logger, "log_model_artifact", False):
                from flavorfusion.tracking import log_model_artifact

                artifact_type = model_artifact_type(cfg.prune)
                log_model_artifact(logger, export_dir, name=f"{artifact_type}-{logger.experiment.id}",
                                   artifact_type=artifact_type, metadata=metrics)
        quantized_dir = export_quantized_model(cfg.quantize, export_dir, loggers, metrics, config_yaml)
    if trainer.is_global_zero:
        write_metrics(metrics, os.path.join(cfg.paths.output_dir, "metrics.json"))
        log.info("metrics: %s", json.dumps(metrics, sort_keys=True))
    if cfg.inference and trainer.is_global_zero:
        print_sample(summarizer, datamodule)
    return TrainResult(metrics, summarizer, datamodule, trainer, export_dir,
                       objects={"quantized_export_dir": quantized_dir})


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    # the value a Hydra sweeper optimizes
    return result.metrics.get(cfg.get("optimized_metric", "val/rougeL"))


if __name__ == "__main__":
    main()
