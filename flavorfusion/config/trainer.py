"""`trainer`: `lightning.pytorch.Trainer` arguments (conf/trainer/*.yaml). The keys the project sets, and the Trainer
arguments people set most (limits, debugging, progress), are typed here with Lightning's own defaults, so they can
be set in YAML and on the command line alike; any other Trainer argument is added with `+trainer.NAME=VALUE`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

# Lightning 2.6's precision flags
PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@dataclass
class TrainerConf(Schema):
    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"  # a count, a list of device indices, or auto (-1: all)
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: str = "32"
    max_epochs: int | None = 3
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    val_check_interval: Any = 1.0  # a fraction of an epoch (float) or a number of batches (int)
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 10
    deterministic: Any = False  # true, false or "warn"
    default_root_dir: str | None = None
    # Lightning's defaults (None: Lightning decides)
    limit_train_batches: Any = None  # a fraction (float) or a number of batches (int)
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    fast_dev_run: Any = False  # true or a number of batches
    overfit_batches: Any = 0.0
    max_time: str | None = None  # DD:HH:MM:SS
    min_epochs: int | None = None
    min_steps: int | None = None
    gradient_clip_algorithm: str | None = None  # norm | value
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    enable_checkpointing: bool | None = None
    profiler: str | None = None
    detect_anomaly: bool = False
    benchmark: bool | None = None
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.accelerator in ACCELERATORS, f"{key}.accelerator", node.accelerator,
                f"must be one of {', '.join(ACCELERATORS)}")
        require(node.precision in PRECISIONS, f"{key}.precision", node.precision,
                f"must be one of {', '.join(PRECISIONS)}")
        require(node.num_nodes >= 1, f"{key}.num_nodes", node.num_nodes, "must be at least 1")
        require(node.max_epochs is None or node.max_epochs >= -1, f"{key}.max_epochs", node.max_epochs,
                "must be -1 (no limit), null or more")
        require(node.max_steps >= -1 and node.max_steps != 0, f"{key}.max_steps", node.max_steps,
                "must be -1 (no limit) or positive")
        require(node.accumulate_grad_batches >= 1, f"{key}.accumulate_grad_batches", node.accumulate_grad_batches,
                "must be at least 1")
        require(node.gradient_clip_val is None or node.gradient_clip_val >= 0, f"{key}.gradient_clip_val",
                node.gradient_clip_val, "must be 0 or more, or null")
        interval = node.val_check_interval
        require(isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0,
                f"{key}.val_check_interval", interval, "must be a positive fraction (float) or batch count (int)")
        require(node.log_every_n_steps >= 1, f"{key}.log_every_n_steps", node.log_every_n_steps, "must be at least 1")
        require(node.num_sanity_val_steps >= -1, f"{key}.num_sanity_val_steps", node.num_sanity_val_steps,
                "must be -1 (all) or more")
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            value = node[name]
            require(value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0),
                    f"{key}.{name}", value, "must be null, a fraction in [0, 1] or a number of batches")
        require(node.gradient_clip_algorithm in (None, "norm", "value"), f"{key}.gradient_clip_algorithm",
                node.gradient_clip_algorithm, "must be norm, value or null")
        require(node.deterministic in (True, False, "warn"), f"{key}.deterministic", node.deterministic,
                "must be true, false or warn")
