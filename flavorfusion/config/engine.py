"""`engine`: where `prepare` and `summarize` run (conf/engine/*.yaml) -> `flavorfusion.engines`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

# FnApiRunner: Beam's in-process Python runner; Beam's DirectRunner first tries Prism, which downloads a binary
RUNNERS = ("FnApiRunner", "DataflowRunner")
RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")


@dataclass
class LocalEngineConf(Schema):
    _target_: str = "flavorfusion.engines.LocalEngine"


@dataclass
class BeamEngineConf(Schema):
    _target_: str = "flavorfusion.engines.beam.BeamEngine"
    runner: str = "FnApiRunner"
    dry_run: bool = False
    lines_per_batch: int = 10_000
    businesses_per_batch: int = 500
    num_shards: int = 0
    direct_num_workers: int = 1
    direct_running_mode: str = "in_memory"
    # Beam's own pipeline option names (checked against Beam's parser when the runner is DataflowRunner)
    dataflow: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.runner in RUNNERS, f"{key}.runner", node.runner,
                f"must be one of {', '.join(RUNNERS)} (Beam's DirectRunner first tries Prism, which downloads a "
                "binary at run time)")
        require(node.direct_running_mode in RUNNING_MODES, f"{key}.direct_running_mode", node.direct_running_mode,
                f"must be one of {', '.join(RUNNING_MODES)}")
        for name in ("lines_per_batch", "businesses_per_batch", "direct_num_workers"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        require(node.num_shards >= 0, f"{key}.num_shards", node.num_shards, "must be 0 (the runner decides) or more")
        require(not node.dry_run or node.runner == "DataflowRunner", f"{key}.dry_run", node.dry_run,
                f"checks a Dataflow job: set {key}.runner=DataflowRunner too")
