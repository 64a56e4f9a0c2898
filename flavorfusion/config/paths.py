"""`paths`: where a run writes (conf/paths/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from flavorfusion.config.schema import Schema


@dataclass
class PathsConf(Schema):
    output_dir: str = "${hydra:runtime.output_dir}"
    checkpoint_dir: str = "${paths.output_dir}/checkpoints"
    export_dir: str = "${paths.output_dir}/model"
    log_dir: str = "${paths.output_dir}/logs"
