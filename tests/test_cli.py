"""The README's journeys as a user runs them: `python -m flavorfusion.train ...` in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import FAST, run_module


@pytest.mark.slow
def test_quickstart_exports_model_and_metrics(tmp_path):
    result = run_module("flavorfusion.train", "experiment=quickstart", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "model" / name).is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/rouge1"] > 20  # it learned the shipped summaries' wording
    assert "generated:" in result.stdout and "reference:" in result.stdout


@pytest.mark.slow
def test_sweep_runs_one_job_per_value(tmp_path):
    result = run_module("flavorfusion.train", "-m", *FAST, "data.k_top_longest=4,8", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for job, k in (("0", 4), ("1", 8)):
        assert (tmp_path / job / "metrics.json").is_file()
        composed = yaml.safe_load((tmp_path / job / ".hydra" / "config.yaml").read_text())
        assert composed["data"]["k_top_longest"] == k


@pytest.mark.parametrize("stage", ["train", "prepare", "evaluate"])
def test_console_scripts_find_the_config_from_any_directory(stage, tmp_path):
    script = Path(sys.executable).parent / f"flavorfusion-{stage}"  # [project.scripts], installed by pip
    result = subprocess.run([str(script), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "_target_: flavorfusion." in result.stdout


@pytest.mark.parametrize("stage", ["train", "prepare", "evaluate", "summarize", "serve"])
def test_help_lists_the_stages_own_groups_and_no_schemas(stage):
    result = run_module(f"flavorfusion.{stage}", "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"python -m flavorfusion.{stage}")
    assert "_schema" not in result.stdout and "_summarizer" not in result.stdout
    groups = {line.split(":")[0].strip() for line in result.stdout.split("Groups")[1].splitlines()[1:] if ": " in line
              and line.startswith("  ")}
    own = {"train": {"trainer", "callbacks", "prune", "quantize"}, "prepare": {"source", "grouping", "translate"},
           "evaluate": {"model", "contrast"}, "summarize": {"engine", "contrast"}, "serve": {"data", "generation"}}
    assert own[stage] <= groups
    if stage in ("summarize", "serve"):  # training's groups are not theirs
        assert not groups & {"trainer", "callbacks", "prune", "quantize", "experiment", "source", "translate"}
