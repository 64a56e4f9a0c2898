"""`quantize`: a quantized export beside the fp one (conf/quantize/*.yaml) -> `flavorfusion.compression.quantization`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

METHODS = ("none", "int8_dynamic", "woq_int8", "woq_int4")


@dataclass
class NoQuantizeConf(Schema):
    method: str = "none"

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.method in METHODS, f"{key}.method", node.method, f"must be one of {', '.join(METHODS)}")


@dataclass
class Int8DynamicConf(NoQuantizeConf):
    method: str = "int8_dynamic"
    exclude: list[str] = field(default_factory=list)  # Linear modules left in fp32 (names or suffixes)
    export_dir: str = "${paths.output_dir}/model_${quantize.method}"


@dataclass
class WeightOnlyConf(Int8DynamicConf):
    method: str = "woq_int8"
    group_size: int = -1  # -1: one scale per output channel

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(node.group_size == -1 or node.group_size > 0, f"{key}.group_size", node.group_size,
                "must be -1 (per channel) or a positive group size")
