"""Optuna studies (hydra/sweeper=optuna_journal) on the quickstart and their report (`flavorfusion.study`):
two objectives, trials two at a time, a trial that fails on purpose, resuming, the vertex_local launcher,
and a best.yaml that composes and trains."""

import json
import math
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.optuna_journal_sweeper.sweeper import objective_values, search_space
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from flavorfusion.errors import ConfigError, DataError
from flavorfusion.studies import read_sweep, report
from flavorfusion.training import objective

from .conftest import FAST, run_module

# a quickstart study: 6 trials, 2 at a time, ROUGE-L up and size down. Trial 0 is queued with
# data.max_docs_per_review=16 > data.k_top_longest=8, which train refuses: it fails on purpose.
STUDY_YAML = """
# @package _global_
defaults:
  - override /prune: structured
  - override /hydra/sweeper: optuna_journal
optimized_metric: [best/rougeL, model/size_mb]
hydra:
  mode: MULTIRUN
  sweeper:
    direction: [maximize, minimize]
    n_trials: 6
    n_jobs: 2
    sampler: {_target_: optuna.samplers.TPESampler, seed: 7}
    enqueue:
      - {data.max_docs_per_review: 16, quantize: none}
    params:
      model.optimizer.lr: tag(log, interval(3e-4, 3e-3))
      data.max_docs_per_review: tag(int, interval(2, 4))
      prune.amount: choice(0.0, 0.5)
      quantize: choice(none, int8_dynamic)
"""
FAILURE = "data.max_docs_per_review=16 must not exceed data.k_top_longest=8"


def run_study(tmp_path: Path, sweep: Path, *extra: str):
    conf = tmp_path / "study_conf"
    (conf / "hparams_search").mkdir(parents=True, exist_ok=True)
    (conf / "hparams_search" / "test_study.yaml").write_text(STUDY_YAML)
    result = run_module("flavorfusion.train", "--config-dir", str(conf), *FAST, "hparams_search=test_study",
                        f"hydra.sweep.dir={sweep}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_trials(sweep: Path) -> list:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna_journal.log")))
    return optuna.load_study(study_name="train", storage=storage).trials


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    run_study(tmp, tmp / "sweep")
    return tmp / "sweep"


# ---- a study through the basic launcher, its report, and best.yaml ------------------------------------

@pytest.mark.slow
def test_study_runs_six_trials_and_a_failing_one_does_not_stop_it(local_study):
    trials = load_trials(local_study)
    assert [t.number for t in trials] == list(range(6))
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert FAILURE in trials[0].user_attrs["error"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    for t in complete:  # two objectives: ROUGE-L (0..100) and MB, as train returned them
        assert len(t.values) == 2 and 0 <= t.values[0] <= 100 and 0.1 < t.values[1] < 5
        metrics = json.loads((local_study / str(t.number) / "metrics.json").read_text())
        assert t.values == [metrics["best/rougeL"], metrics["model/size_mb"]]
        served = "model_int8_dynamic" if t.params["quantize"] == "int8_dynamic" else "model"
        size = (local_study / str(t.number) / served / "model.safetensors").stat().st_size / 1e6
        assert metrics["model/size_mb"] == pytest.approx(size)
    assert len({t.params["model.optimizer.lr"] for t in trials}) == 6  # seeded TPE draws, none repeated


@pytest.mark.slow
def test_report_lists_all_runs_plots_the_front_and_writes_a_best_config_that_trains(local_study, tmp_path):
    result = run_module("flavorfusion.study", str(local_study))
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(local_study / "study.csv")
    assert list(table["run"]) == list(range(6))
    failed = table[table["state"] == "FAILED"]
    assert list(failed["run"]) == [0] and FAILURE in failed["error"].iloc[0]
    assert (table["state"] == "COMPLETE").sum() == 5
    assert {"model.optimizer.lr", "quantize", "rougeL", "size_mb"} <= set(table.columns)
    assert table["pareto"].any() and not table.loc[table["run"] == 0, "pareto"].iloc[0]
    md = (local_study / "study.md").read_text()
    assert "## Failed and unfinished runs" in md and f"#0 FAILED: ConfigError: {FAILURE}" in md
    for name in ("study_pareto.png", "study_effects.png", "study_importance.png"):
        data = (local_study / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name

    # best.yaml: an experiment config whose composition equals the chosen run's config, and trains
    best = (local_study / "best.yaml").read_text()
    assert best.startswith("# @package _global_")
    chosen = int(best.split("Run #")[1].split()[0])
    assert table.loc[table["run"] == chosen, "pareto"].iloc[0]
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    shutil.copy(local_study / "best.yaml", conf / "best.yaml")
    rerun = run_module("flavorfusion.train", "--config-dir", str(tmp_path / "conf"), "experiment=best",
                       f"hydra.run.dir={tmp_path}/rerun")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    original = yaml.safe_load((local_study / str(chosen) / ".hydra" / "config.yaml").read_text())
    again = yaml.safe_load((tmp_path / "rerun" / ".hydra" / "config.yaml").read_text())
    assert again == original
    metrics = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    assert metrics["model/size_mb"] == pytest.approx(table.loc[table["run"] == chosen, "size_mb"].iloc[0])


# ---- resuming -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_interrupted_study_resumes_without_repeating_trials(tmp_path):
    sweep = tmp_path / "sweep"
    run_study(tmp_path, sweep, "hydra.sweeper.n_trials=3")
    first = load_trials(sweep)
    assert len(first) == 3
    # a sweep killed while trial 3 ran leaves it RUNNING in the journal
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna_journal.log")))
    killed = optuna.load_study(study_name="train", storage=storage).ask(
        {"model.optimizer.lr": FloatDistribution(3e-4, 3e-3, log=True)})

    result = run_study(tmp_path, sweep, "hydra.sweeper.n_trials=5")
    assert "3 of 5 trial(s) done" in result.stderr + result.stdout
    trials = load_trials(sweep)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
    for before, after in zip(first, trials[:3], strict=True):  # the first trials are kept, not run again
        assert (after.state, after.params, after.values) == (before.state, before.params, before.values)
    assert trials[3].user_attrs["interrupted"] and trials[3].state == optuna.trial.TrialState.FAIL
    assert trials[4].params["model.optimizer.lr"] == killed.params["model.optimizer.lr"]  # its parameters rerun
    assert trials[5].state == optuna.trial.TrialState.COMPLETE
    assert trials[5].params not in [t.params for t in trials[:5]]
    assert not (sweep / "3").exists() and (sweep / "4" / "metrics.json").exists()

    runs = {r.num: r for r in read_sweep(sweep).runs}
    assert runs[3].state == "INTERRUPTED" and "interrupted" in runs[3].error


# ---- the vertex_local launcher --------------------------------------------------------------------------

@pytest.mark.slow
def test_study_through_vertex_local_and_its_report_reads_vertex_jobs_yaml(tmp_path):
    sweep = tmp_path / "sweep"
    run_study(tmp_path, sweep, "hydra/launcher=vertex_local", "hydra.launcher.max_parallel=2",
              "hydra.launcher.poll_interval=0.1")
    jobs = {j["num"]: j for j in yaml.safe_load((sweep / "vertex_jobs.yaml").read_text())["jobs"]}
    assert sorted(jobs) == list(range(6))
    assert jobs[0]["state"] == "FAILED" and FAILURE in jobs[0]["error"]
    assert all(jobs[n]["state"] == "SUCCEEDED" and "val/loss" in jobs[n]["metrics"] for n in range(1, 6))
    trials = load_trials(sweep)
    assert [t.state.name for t in trials] == ["FAIL"] + ["COMPLETE"] * 5

    for n in range(1, 6):  # as on Vertex, where the metrics are in gs://, not in the local job dirs
        (sweep / str(n) / "metrics.json").unlink()
    report(sweep, wandb="off")
    table = pd.read_csv(sweep / "study.csv")
    assert len(table) == 6 and table.loc[table["run"] == 0, "state"].iloc[0] == "FAILED"
    complete = table[table["state"] == "COMPLETE"]
    assert len(complete) == 5 and complete["sources"].str.contains("vertex_jobs.yaml").all()
    for _, row in complete.iterrows():
        assert row["val/loss"] == pytest.approx(jobs[row["run"]]["metrics"]["val/loss"])
        assert row["size_mb"] == pytest.approx(jobs[row["run"]]["metrics"]["model/size_mb"])
    assert (sweep / "study_pareto.png").stat().st_size > 10_000


# ---- pieces ---------------------------------------------------------------------------------------------

def test_search_space_from_hydra_overrides():
    parsed = OverridesParser.create().parse_overrides([
        "model.optimizer.lr=tag(log, interval(1e-5, 1e-3))", "data.k_top_longest=tag(int, interval(2, 8))",
        "quantize=choice(none, int8_dynamic)", "prune.amount=range(0, 3)", "seed=3"])
    fixed, space = search_space(parsed)
    assert fixed == ["seed=3"]
    assert space["model.optimizer.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert space["data.k_top_longest"] == IntDistribution(2, 8)
    assert space["quantize"] == CategoricalDistribution(["none", "int8_dynamic"])
    assert space["prune.amount"] == CategoricalDistribution([0, 1, 2])
    with pytest.raises(ConfigError, match="quantize"):
        search_space(OverridesParser.create().parse_overrides(["quantize=tag(log, choice(a, b))"]))


def test_objective_values_from_each_kind_of_return():
    assert objective_values([30.0, 1.5], ["a", "b"], 2) == [30.0, 1.5]
    assert objective_values(30, None, 1) == [30.0]
    assert objective_values({"a": 1.0, "b": 2.0, "c": 3.0}, ["b", "a"], 2) == [2.0, 1.0]  # Vertex's metrics dict
    for bad, match in ((None, "returned nothing"), ([1.0], "1 value"), ({"a": 1.0}, "no 'b'"),
                       ([math.nan, 1.0], "not finite")):
        with pytest.raises(ValueError, match=match):
            objective_values(bad, ["a", "b"], 2)


def test_train_returns_what_optimized_metric_names():
    metrics = {"best/rougeL": 12.5, "model/size_mb": 1.2, "best_checkpoint": "x.ckpt"}
    assert objective(metrics, "best/rougeL") == 12.5
    assert objective(metrics, ["best/rougeL", "model/size_mb"]) == [12.5, 1.2]
    assert objective(metrics, None) is None
    with pytest.raises(ConfigError, match=r"optimized_metric: 'val/nope' is not a metric of this run \(it has: best/"):
        objective(metrics, ["val/nope"])


def test_report_of_a_grid_sweep_lists_a_run_without_metrics(tmp_path):
    for num, (amount, metrics) in enumerate([(0.1, {"best/rougeL": 20.0, "model/size_mb": 2.0}),
                                             (0.5, {"best/rougeL": 18.0, "model/size_mb": 1.0}),
                                             (0.9, {"best/rougeL": 15.0, "model/size_mb": 1.5}),
                                             (0.95, None)]):
        run = tmp_path / str(num)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=x", f"prune.amount={amount}"]))
        if metrics:
            (run / "metrics.json").write_text(json.dumps(metrics))
    written = report(tmp_path, wandb="off")
    assert "best.yaml" not in written  # no .hydra/config.yaml to reproduce from
    table = pd.read_csv(tmp_path / "study.csv")
    assert list(table["prune.amount"]) == [0.1, 0.5, 0.9, 0.95]
    assert list(table["pareto"]) == [True, True, False, False]  # #2 is beaten by #1 on both
    assert table["state"].iloc[3] == "NO RESULT" and "no metrics.json" in table["error"].iloc[3]
    assert "Every run: `experiment=x`" in (tmp_path / "study.md").read_text()


def test_a_directory_without_runs_is_one_line(tmp_path):
    result = run_module("flavorfusion.study", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: no runs")
    with pytest.raises(DataError, match="no such sweep directory"):
        read_sweep(tmp_path / "nope")


@pytest.mark.slow
def test_report_logs_to_the_sweeps_wandb_group_offline(tmp_path, caplog):
    run = tmp_path / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["logger=wandb", "prune.amount=0.5"]))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"group": "sweep_prune", "logger": {"wandb": {"project": "FlavorFusion", "group": "${group}"}}}))
    (run / "metrics.json").write_text(json.dumps({"best/rougeL": 20.0, "model/size_mb": 2.0}))
    caplog.set_level("INFO", logger="flavorfusion.studies")
    report(tmp_path)  # auto: the runs logged to W&B, so the study does
    assert "logged the study to W&B group sweep_prune (offline)" in caplog.text
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1


def test_report_shows_each_runs_group_spread_beside_rouge(tmp_path):
    for num, spread in enumerate([3.25, 0.5]):
        run = tmp_path / str(num)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"prune.amount={0.1 * (num + 1)}"]))
        (run / "metrics.json").write_text(json.dumps({"best/rougeL": 20.0 - num, "model/size_mb": 2.0 - num}))
        (run / "report.csv").write_text("variant,kind,rougeL,rougeL_group_spread\n"
                                        f"model,model,19.0,{spread}\n")
    report(tmp_path, wandb="off")
    table = pd.read_csv(tmp_path / "study.csv")
    assert list(table["rougeL_group_spread"]) == [3.25, 0.5]
    header = next(line for line in (tmp_path / "study.md").read_text().splitlines() if line.startswith("| run"))
    assert "| rougeL | rougeL_group_spread |" in header
