"""What every config schema shares: the `Schema` base whose `check` holds a node's range and consistency checks,
and `check_config`, which runs them over a composed config.

Types and unknown keys are refused by Hydra at compose time (each group's YAML options extend their dataclass,
Hydra's schema pattern); values that type-check but cannot work (a negative length, a ratio above 1, two keys
that contradict each other) are refused here, by the schema of the node that holds the key.
"""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from flavorfusion.errors import ConfigError

T = TypeVar("T")


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


def as_schema(node: DictConfig, schema: type[T]) -> T:
    """A config node as its schema's dataclass, also where it was composed without the schema (DVC composes
    `params.yaml` as plain YAML, which `evaluate` and `train` read as it is)."""
    return schema(**OmegaConf.to_container(node, resolve=True))


def check_config(node: DictConfig, key: str = "") -> None:
    """Run `check` of every node typed by a Schema, children first. A check reads only the keys it checks, so values
    it does not read (a `${hydra:...}` path outside a run, an output still `???`) are never resolved here."""
    for name in node:
        child = node._get_node(name)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing() \
                and not child._is_interpolation():
            check_config(child, join(key, str(name)))
    schema = OmegaConf.get_type(node)
    if isinstance(schema, type) and issubclass(schema, Schema):
        try:
            schema.check(node, key)
        except MissingMandatoryValue as err:
            raise ConfigError(f"{err.full_key}: missing value (???); set it on the command line") from None


def missing_keys(node: DictConfig | ListConfig, key: str = "") -> list[str]:
    """The full keys still `???`, found without resolving any interpolation (OmegaConf.missing_keys resolves them,
    and a `${hydra:...}` path fails outside a Hydra run)."""
    found = []
    for name in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        child = node._get_node(name)
        full = join(key, str(name)) if isinstance(node, DictConfig) else f"{key}[{name}]"
        if child._is_missing():
            found.append(full)
        elif isinstance(child, DictConfig | ListConfig) and not child._is_none() and not child._is_interpolation():
            found += missing_keys(child, full)
    return found
