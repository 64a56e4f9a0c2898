"""Helpers the entry points and stages share: the config directory, building objects from `_target_` config
nodes, writing a run's metrics."""

import json
import os
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from flavorfusion.errors import ConfigError, find_user_error
from flavorfusion.io import atomic_output

# The Hydra config directory (`conf/` beside the package), as an absolute path for `@hydra.main(config_path=...)`:
# Hydra reads a relative "../conf" as a directory under `python -m flavorfusion.train`, but as a Python package
# (`pkg://conf`, which does not exist) when the entry point runs as a console script (`flavorfusion-train`).
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def instantiate_nodes(nodes: DictConfig | None) -> list:
    """Instantiate a dict of `_target_` nodes; a null node (e.g. `callbacks.x=null`) is left out."""
    return [instantiate(node) for node in (nodes or {}).values() if node is not None and "_target_" in node]


def build(cfg: DictConfig, key: str, **kwargs) -> Any:
    """`instantiate(cfg[key])`, but a user error raised while building surfaces as itself, and any other
    failure to build (unknown `_target_`, a wrong argument) as a ConfigError naming `key`."""
    try:
        return instantiate(cfg[key], _convert_="all", **kwargs)
    except InstantiationException as err:
        user_error = find_user_error(err)
        if user_error is not None:
            raise user_error from None
        raise ConfigError(f"{key}: {err.__cause__ or err}") from None


def write_metrics(metrics: dict, path: str | os.PathLike) -> str:
    """`metrics` as sorted, indented JSON at `path`, written atomically (a reader sees all of it or none)."""
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    return os.fspath(path)
