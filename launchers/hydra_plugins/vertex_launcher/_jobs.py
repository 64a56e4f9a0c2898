"""From Hydra's job overrides to composed jobs, and from job outcomes back to Hydra's JobReturns."""

import contextlib
import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ._submission import SUCCEEDED, JobOutcome


class JobFailedError(RuntimeError):
    """The error a FAILED JobReturn holds: the job's name and the backend's message."""


@dataclass
class ComposedJob:
    """One job of the sweep: its number, overrides, full config, and the local directory it owns."""

    num: int
    overrides: list[str]
    sweep_config: DictConfig
    local_dir: str

    @property
    def task_name(self) -> str:
        return str(self.sweep_config.hydra.job.name)


def compose_jobs(
    hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[ComposedJob]:
    """Compose every job's config exactly as Hydra's basic launcher does (fails on a bad override)."""
    jobs = []
    for offset, overrides in enumerate(job_overrides):
        num = initial_job_idx + offset
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = num
            sweep_config.hydra.job.num = num
        local_dir = _job_output_dir(sweep_config)
        with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
            sweep_config.hydra.runtime.output_dir = local_dir
        jobs.append(ComposedJob(num, list(overrides), sweep_config, local_dir))
    return jobs


@contextlib.contextmanager
def job_hydra_config(sweep_config: DictConfig) -> Iterator[None]:
    """The job's Hydra config installed (as run_job does), so `${hydra:...}` resolves to the job's values."""
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(sweep_config)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved


def _job_output_dir(sweep_config: DictConfig) -> str:
    with job_hydra_config(sweep_config):  # `${hydra:...}` in sweep.dir/subdir
        sweep_dir = str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))
        subdir = str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    return os.path.abspath(os.path.join(sweep_dir, subdir))


def save_job_record(job: ComposedJob) -> None:
    """The `.hydra/` files Hydra writes for a local job, for a job that runs elsewhere."""
    output_subdir = job.sweep_config.hydra.output_subdir
    if output_subdir is None:
        return
    hydra_dir = Path(job.local_dir) / str(output_subdir)
    hydra_dir.mkdir(parents=True, exist_ok=True)
    task_cfg, hydra_cfg = split_config(job.sweep_config)
    for name, cfg in [("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg),
                      ("overrides.yaml", job.sweep_config.hydra.overrides.task)]:
        (hydra_dir / name).write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")


def split_config(sweep_config: DictConfig) -> tuple[DictConfig, DictConfig]:
    """(the task's config without `hydra`, a config holding only `hydra`), as run_job returns them."""
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    hydra_cfg = OmegaConf.masked_copy(sweep_config, "hydra")
    return task_cfg, hydra_cfg


def job_return(job: ComposedJob, outcome: JobOutcome, name: str) -> JobReturn:
    """A finished JobReturn: COMPLETED with the job's value, or FAILED holding a JobFailedError."""
    ret = JobReturn()
    ret.cfg, ret.hydra_cfg = split_config(job.sweep_config)
    ret.overrides = list(OmegaConf.to_container(job.sweep_config.hydra.overrides.task))
    ret.working_dir = job.local_dir
    ret.task_name = job.task_name
    if outcome.state == SUCCEEDED:
        ret.status = JobStatus.COMPLETED
        ret.return_value = outcome.return_value
    else:
        ret.status = JobStatus.FAILED
        ret.return_value = JobFailedError(f"{name} failed: {outcome.message}")
    return ret


def describe(value: Any) -> str:
    """A job's return value on one short line for the sweep summary."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)
