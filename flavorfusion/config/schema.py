"""What every config schema shares: the `Schema` base whose `check` holds a node's range and consistency checks,
and `check_config`, which runs them over a composed config.

Types and unknown keys are refused by Hydra at compose time (each group's YAML options extend their dataclass,
Hydra's schema pattern); values that type-check but cannot work (a negative length, a ratio above 1, two keys
that contradict each other) are refused here, by the schema of the node that holds the key.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from flavorfusion.errors import ConfigError


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise a ConfigError `key=value expected` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value} {expected}")


def join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


class Schema:
    """Base of the config dataclasses. `check(node, key)` gets the composed node (a DictConfig, read lazily, so
    interpolations resolve only where read) and the node's full key (`data`, `baselines.lexrank`, ...)."""

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        """Range and consistency checks of this node's own keys; none by default."""


def check_config(node: DictConfig, key: str = "") -> None:
    """Run `check` of every node typed by a Schema, children first. Nodes holding a missing value (`???`) are left
    to the stage's own check of missing values, which names them."""
    for name in node:
        child = node._get_node(name)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing() \
                and not child._is_interpolation():
            check_config(child, join(key, str(name)))
    schema = OmegaConf.get_type(node)
    if isinstance(schema, type) and issubclass(schema, Schema) and not OmegaConf.missing_keys(node):
        schema.check(node, key)
