"""Choosing a run: the Pareto front (ROUGE-L up, size down), the run to keep, and `best.yaml`, the experiment
config that reproduces it (composed with Hydra)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from flavorfusion.errors import DataError
from flavorfusion.studies.sweep import COMPLETE, SIZE_KEY, Run, Study, load_yaml, short

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


def choose(study: Study, pick: int | None = None, max_size_mb: float | None = None) -> Run | None:
    """The run `pick`, or the best ROUGE-L on the Pareto front (within `max_size_mb`), ties to the smaller."""
    if pick is not None:
        chosen = next((r for r in study.runs if r.num == pick), None)
        if chosen is None or chosen.state != COMPLETE:
            raise DataError(f"--pick {pick}: no complete run #{pick} in {study.sweep_dir}")
        return chosen
    front = [r for r in study.runs if r.pareto and
             (max_size_mb is None or (r.value(SIZE_KEY) is not None and r.value(SIZE_KEY) <= max_size_mb))]
    if not front:
        return None
    return max(front, key=lambda r: (r.rouge_l, -(r.value(SIZE_KEY) or 0.0)))


def best_experiment(run: Run, sweep_dir: str) -> str:
    """An experiment config (`# @package _global_`) that reproduces `run`: the run's config groups as
    `override /group: option`, then every key whose value differs from what those groups alone compose to."""
    job = Path(run.job_dir or "")
    hydra_cfg = (load_yaml(job / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
    run_cfg = load_yaml(job / ".hydra" / "config.yaml")
    if run_cfg is None or not hydra_cfg:
        raise DataError(f"run #{run.num}: {job}/.hydra/config.yaml and hydra.yaml are needed to write best.yaml")
    skip = ("experiment", "hparams_search", "hydra")
    choices = {k: v for k, v in (hydra_cfg.get("runtime", {}).get("choices") or {}).items()
               if v is not None and k not in skip and not k.startswith("hydra/")}
    base = _compose(hydra_cfg.get("job", {}).get("config_name") or "train", choices)
    delta = _difference(run_cfg, base)
    summary = ", ".join(f"{k}={short(v)}" for k, v in run.params.items())
    metrics = f"ROUGE-L {run.rouge_l:.2f}" + (f", {run.value(SIZE_KEY):.3f} MB" if run.value(SIZE_KEY) else "")
    lines = [
        "# @package _global_",
        f"# Run #{run.num} of the sweep {os.path.abspath(sweep_dir)} ({metrics}): {summary}",
        "# written by `python -m flavorfusion.study`. Rerun it: copy this file to conf/experiment/<name>.yaml, then",
        "#   python -m flavorfusion.train experiment=<name>",
        "defaults:",
        *[f"  - override /{group}: {option}" for group, option in choices.items()],
        "",
    ]
    body = yaml.safe_dump(delta, sort_keys=False, default_flow_style=False, width=120) if delta else ""
    return "\n".join(lines) + body


def _compose(config_name: str, choices: dict) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from flavorfusion.runs import CONFIG_DIR

    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=[f"{g}={o}" for g, o in choices.items()])
    return OmegaConf.to_container(cfg, resolve=False)


def _difference(run: Any, base: Any) -> Any:
    """The part of `run` that `base` does not already hold (nested dicts compared key by key)."""
    if isinstance(run, dict) and isinstance(base, dict):
        out = {}
        for key, value in run.items():
            if key not in base:
                out[key] = value
            else:
                sub = _difference(value, base[key])
                if sub is not _SAME:
                    out[key] = sub
        return out if out else _SAME
    return _SAME if run == base else run


class _Same:
    def __bool__(self) -> bool:
        return False


_SAME = _Same()
