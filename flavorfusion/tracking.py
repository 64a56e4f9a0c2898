"""W&B: the logger factory (online only with a key from the environment), sweep groups, model artifacts and
closing runs. Light to import (Lightning and wandb load inside the functions): the Vertex launcher, which Hydra
imports in every app, names sweep groups with `sweep_group_name`."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:  # `wandb login` stores the key in ~/.netrc
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def sweep_group() -> str | None:
    """In a `-m` sweep, a group shared by its jobs: `<job name>/<sweep dir name>`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    return sweep_group_name(hydra_cfg.job.name, hydra_cfg.sweep.dir)


def sweep_group_name(job_name: str, sweep_dir: str) -> str:
    """The W&B group of a sweep's jobs: `<job name>/<sweep dir name>`, e.g. `train/2026-11-27_10-00-00`.
    Local `-m` sweeps (`sweep_group`) and the Vertex launcher's jobs are grouped alike."""
    return f"{job_name}/{os.path.basename(os.path.normpath(str(sweep_dir)))}"


def wandb_logger(project: str = "FlavorFusion", offline: bool | None = None, log_model_artifact: bool = True,
                 group: str | None = None, **kwargs) -> WandbLogger:
    """A WandbLogger that goes offline when no API key is available (or WANDB_MODE=offline).

    `group` defaults to the sweep's group in a multirun, so W&B dashboards compare its runs.
    """
    from lightning.pytorch.loggers import WandbLogger

    kwargs["group"] = group or sweep_group()
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not has_wandb_credentials()
    if offline:
        log.info("W&B runs offline (no WANDB_API_KEY); upload later with `wandb sync`")
    logger = WandbLogger(project=project, offline=offline, log_model=False, **kwargs)
    logger.log_model_artifact = log_model_artifact  # read by train() after export
    return logger


def log_model_artifact(logger: WandbLogger, directory: str, name: str, artifact_type: str = "model",
                       metadata: dict | None = None) -> None:
    """Upload an exported model directory as a W&B artifact (`model`, `pruned_model`, `quantized_model`)."""
    import wandb

    artifact = wandb.Artifact(name=name, type=artifact_type, metadata=metadata or {})
    artifact.add_dir(directory)
    logger.experiment.log_artifact(artifact, aliases=["latest"])
    log.info("logged %s as W&B artifact %s (%s)", directory, name, artifact_type)


def finish_runs(loggers: list, exit_code: int) -> None:
    """Flush and close the W&B runs of `loggers`, so the next run in this process starts afresh."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=exit_code)
