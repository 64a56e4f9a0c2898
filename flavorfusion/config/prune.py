"""`prune`: pruning during or after fine-tuning (conf/prune/*.yaml) -> `flavorfusion.compression.pruning`."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

SCHEDULES = ("gradual", "oneshot")


def check_amount(amount: float, key: str = "prune.amount") -> None:
    require(0 <= amount < 1, key, amount, "must be in [0, 1)")


def check_schedule(schedule: str, key: str = "prune.schedule") -> None:
    require(schedule in SCHEDULES, key, schedule, f"must be one of {', '.join(SCHEDULES)}")


@dataclass
class NoPruneConf(Schema):
    """prune=none. Every option has `amount`, so `prune.amount=0.5` composes with any of them."""

    amount: float = 0.0

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        check_amount(node.amount, f"{key}.amount")


@dataclass
class StructuredPruneConf(NoPruneConf):
    _target_: str = "flavorfusion.compression.pruning.StructuredPruning"
    amount: float = 0.5
    schedule: str = "gradual"

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        check_schedule(node.schedule, f"{key}.schedule")


@dataclass
class L1UnstructuredConf(StructuredPruneConf):
    _target_: str = "flavorfusion.compression.pruning.L1UnstructuredPruning"
    suffixes: list[str] | None = None  # null: flavorfusion.compression.pruning.DEFAULT_SUFFIXES
    verbose: int = 1

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(node.suffixes is None or len(node.suffixes) > 0, f"{key}.suffixes", "[]",
                "is empty: name at least one module suffix, e.g. [fc1, fc2], or null for the default set")
