"""Helpers the entry points and stages share: the config directory, the entry-point decorator, building objects
from `_target_` config nodes, writing a run's metrics."""

import contextlib
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import hydra
from hydra.errors import CompactHydraException, InstantiationException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import flavorfusion.config  # noqa: F401  (registers the config schemas before Hydra composes)
from flavorfusion.errors import ConfigError, exit_on_user_error, find_user_error
from flavorfusion.io import atomic_output

# The Hydra config directory (`conf/` beside the package), as an absolute path for `@hydra.main(config_path=...)`:
# Hydra reads a relative "../conf" as a directory under `python -m flavorfusion.train`, but as a Python package
# (`pkg://conf`, which does not exist) when the entry point runs as a console script (`flavorfusion-train`).
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def composition_error_line(err: BaseException) -> str:
    """One line for a config that failed to compose: the full key, the value and what was expected."""
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(err, MissingConfigException) and err.options:  # `data=nope`
        first = str(err).strip().splitlines()[0].strip()
        return f"{first} (options: {', '.join(sorted(o for o in err.options if not o.startswith('_')))})"
    full_key = getattr(cause, "full_key", None)
    message = getattr(cause, "msg", None) or str(cause)
    message = re.sub(r"\s+", " ", message.split("\n    full_key")[0]).strip()
    override = re.search(r"override (\S+=\S*)", str(err))
    if full_key:
        if "not in" in message:  # "Key 'x' not in 'TrainerConf'", "... not in struct"
            return (f"{full_key}: no such key ({message}); check its spelling, or add a new one with "
                    f"+{full_key}=VALUE")
        return f"{full_key}: {message}" + (f" (from {override[1]})" if override else "")
    return re.sub(r"\s+", " ", str(err)).strip()


# a key naming a secret itself (`serve.api_key`, `+x.token`, `password`), not where to find it (`serve.api_key_env`,
# `serve.api_key_secret`, the launcher's `secrets.NAME` map of Secret Manager names)
_SECRET_VALUE = re.compile(r"(api_?key|token|password|passwd|secret)$", re.IGNORECASE)
_SECRET_REFERENCE = ("_env", "_secret", "_file", "_path")
_OVERRIDE_KEY = re.compile(r"^[+~]*([\w.@/-]+)=")


def names_a_secret(key: str) -> bool:
    parts = key.lower().split(".")
    if "secrets" in parts[:-1] or parts[-1].endswith(_SECRET_REFERENCE):
        return False
    return bool(_SECRET_VALUE.search(parts[-1]))


def refuse_secrets(overrides: list[str]) -> None:
    """A secret on the command line would stay in the shell's history and the run's `.hydra/`: refused before
    Hydra composes or writes anything, whatever the key's prefix (`+serve.api_key=...` too)."""
    for override in overrides:
        match = _OVERRIDE_KEY.match(override)
        if match and names_a_secret(match[1]):
            key = match[1]
            raise ConfigError(f"{key}: a secret never goes on the command line (it would be kept in the shell's "
                              "history and the run's .hydra/ directory); put it in an environment variable and "
                              "set serve.api_key_env=VARIABLE_NAME, or in Secret Manager and set "
                              "serve.api_key_secret=projects/P/secrets/S/versions/latest")


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set within the block, as they were after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stage_help(config_name: str) -> str:
    """`--help` of one stage: the usage and description at the top of conf/<stage>.yaml, the groups its defaults
    list composes with their options (the files of conf/<group>/, those starting with `_` left out), and where
    its keys are. Hydra's own help would list every group of conf/ and the schemas registered for them."""
    import yaml

    path = os.path.join(CONFIG_DIR, f"{config_name}.yaml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    header = []
    for line in text.splitlines():  # the comment block at the top of the file
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    lines = [*header, "", "Groups (GROUP=OPTION; the default first):"]
    for entry in yaml.safe_load(text).get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        (key, default), = entry.items()
        key = key.removeprefix("optional ").removeprefix("override ")
        group, _, target = key.partition("@")
        if group.startswith("hydra") or default is None and group != "experiment":
            continue
        directory = os.path.join(CONFIG_DIR, group)
        options = sorted(f.removesuffix(".yaml") for f in os.listdir(directory)
                         if f.endswith(".yaml") and not f.startswith("_")) if os.path.isdir(directory) else []
        options = ([str(default)] if default in options else []) + [o for o in options if o != default]
        lines.append(f"  {target or group}: {', '.join(options)}")
    lines += ["", f"Every key, with its value: python -m flavorfusion.{config_name} --cfg job [overrides]",
              f"What each key does: conf/{config_name}.yaml and conf/<group>/<option>.yaml (comments beside the keys)"]
    return "\n".join(lines)


def hydra_entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """`@hydra.main` on conf/<config_name>.yaml for a stage's entry point, with one error contract: a config that does
    not compose (wrong type, unknown key, unknown option) and a FlavorFusionError raised by the stage each end as
    one line `error: ...` on stderr with exit status 2."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            exit_on_user_error(task))

        @functools.wraps(task)
        def main() -> Any:
            if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
                print(stage_help(config_name))
                raise SystemExit(0)
            try:
                refuse_secrets(sys.argv[1:])
            except ConfigError as err:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
            # Hydra prints composition errors over several lines and exits 1; with HYDRA_FULL_ERROR it raises them
            with environment(HYDRA_FULL_ERROR="1"):
                try:
                    return hydra_main()
                except (CompactHydraException, OmegaConfBaseException) as err:
                    print(f"error: {composition_error_line(err)}", file=sys.stderr)
                    raise SystemExit(2) from None

        return main

    return decorate


def instantiate_nodes(nodes: DictConfig | None, key: str) -> list:
    """Instantiate a dict of `_target_` nodes (`callbacks`, `logger`); a null node (e.g. `callbacks.x=null`) is left
    out. These nodes are free-form (each class takes its own arguments), so a value the class refuses is a
    ConfigError naming the node, as a typed key's would be."""
    built = []
    for name, node in (nodes or {}).items():
        if node is None or "_target_" not in node:
            continue
        try:
            built.append(instantiate(node))
        except InstantiationException as err:
            user_error = find_user_error(err)
            if user_error is not None:
                raise user_error from None
            cause = err.__cause__ or err
            raise ConfigError(f"{key}.{name}: {node._target_.rsplit('.', 1)[-1]} refused its arguments "
                              f"({type(cause).__name__}: {' '.join(str(cause).split())[:200]})") from None
    return built


def instantiate_node(cfg: DictConfig, key: str, **kwargs) -> Any:
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
