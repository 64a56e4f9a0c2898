"""The DVC pipeline (dvc.yaml, conf/pipeline.yaml, .dvc/config): composition, provenance, and (slow) a real
temporary git + DVC repository: repro -> push -> pull in a fresh clone -> no-op repro -> an experiment."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flavorfusion import provenance

ROOT = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
       "-c", "commit.gpgsign=false"]

dvc_hydra = pytest.importorskip("dvc.utils.hydra", reason="dvc is a dev dependency: pip install -e '.[dev]'")


def compose_params(output: Path, config_dir: Path = ROOT / "conf", name: str = "pipeline",
                   overrides: list[str] | None = None) -> dict:
    """params.yaml exactly as `dvc exp run` writes it (DVC's own Hydra composition)."""
    dvc_hydra.compose_and_dump(output, str(config_dir), None, name, str(config_dir.parent), overrides or [])
    return yaml.safe_load(output.read_text())


def select(params: dict, key: str):
    node = params
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"params.yaml has no {key}"
        node = node[part]
    return node


# ---- fast: composition and dvc.yaml ------------------------------------------------------------------

def test_pipeline_composes_with_train_keys_and_literal_paths(tmp_path):
    params = compose_params(tmp_path / "params.yaml")
    assert params["prune"]["amount"] == 0.0 and "_target_" in params["prune"]  # -S prune.amount=0.5 prunes
    assert params["data"]["path"] == "data/prepared/lsars.parquet"
    assert not any("${" in str(v) for v in _leaves(params)), "params.yaml must be fully resolved"
    for key in ("output_dir", "export_dir", "checkpoint_dir", "log_dir"):
        assert not os.path.isabs(params["paths"][key])
    # every key `train` reads is there (the root is train's config) and is a param of the train stage
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"prepare_google", "prepare_lsars", "train", "evaluate", "summarize"}
    train_keys = set(yaml.safe_load((ROOT / "conf/train.yaml").read_text())) - {"defaults", "task_name"}
    train_keys |= {"data", "model", "prune", "quantize", "callbacks", "logger", "trainer", "paths"}
    assert train_keys <= set(stages["train"]["params"])
    # every ${...} of dvc.yaml is a key of the composed params
    for ref in re.findall(r"\$\{([^}]+)\}", (ROOT / "dvc.yaml").read_text()):
        select(params, ref.strip())


def test_committed_params_yaml_is_composed_from_pipeline(tmp_path):
    """Every dvc command reads params.yaml (dvc.yaml's ${...}); `dvc exp run` recomposes it, `dvc repro` does not."""
    composed = compose_params(tmp_path / "params.yaml")
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == composed, (
        "params.yaml is stale: recompose it from conf/pipeline.yaml (`dvc exp run`, or the command in docs/dvc.md)")


def test_same_override_keys_as_train(tmp_path):
    params = compose_params(tmp_path / "params.yaml", overrides=["prune.amount=0.5", "data.k_top_longest=10",
                                                                 "model=tiny"])
    assert params["prune"]["amount"] == 0.5 and params["data"]["k_top_longest"] == 10
    assert params["model"]["_target_"].endswith("from_tiny_config")


def test_unknown_override_key_is_named(tmp_path):
    with pytest.raises(Exception, match=r"prune\.amountt"):
        compose_params(tmp_path / "params.yaml", overrides=["prune.amountt=0.5"])


def _leaves(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _leaves(v)
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v)
    else:
        yield node


# ---- fast: provenance ----------------------------------------------------------------------------------

def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_data_version_from_lock_and_dvc_files(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    prepared = tmp_path / "data/prepared/lsars.parquet"
    prepared.parent.mkdir(parents=True)
    prepared.write_bytes(b"groups")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"prepare_lsars": {
        "cmd": "x", "outs": [{"path": "data/prepared/lsars.parquet", "hash": "md5", "md5": _md5(prepared)}]}}}))
    raw = tmp_path / "data/raw/quickstart.jsonl"
    raw.parent.mkdir(parents=True)
    raw.write_text("{}\n")
    (tmp_path / "data/raw/quickstart.jsonl.dvc").write_text(
        yaml.safe_dump({"outs": [{"md5": "0" * 32, "path": "quickstart.jsonl", "hash": "md5"}]}))
    (tmp_path / "data/folder").mkdir()
    (tmp_path / "data/folder/a.jsonl").write_text("{}\n")
    (tmp_path / "data/folder.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "abc.dir", "path": "folder"}]}))
    monkeypatch.chdir(tmp_path)

    version = provenance.data_version(["data/prepared/lsars.parquet", "data/raw/quickstart.jsonl",
                                       "data/folder/a.jsonl", "gs://bucket/x.parquet", "untracked.csv"])
    by_path = {r["path"]: r for r in version["inputs"]}
    assert by_path["data/prepared/lsars.parquet"] == {"path": "data/prepared/lsars.parquet", "md5": _md5(prepared),
                                                      "source": "dvc.lock:prepare_lsars", "verified": True}
    assert by_path["data/raw/quickstart.jsonl"]["verified"] is False  # changed since `dvc add`
    assert by_path["data/folder/a.jsonl"] == {"path": "data/folder/a.jsonl", "md5": "abc.dir",
                                              "source": "data/folder.dvc", "within": "data/folder"}
    assert set(by_path) == {"data/prepared/lsars.parquet", "data/raw/quickstart.jsonl", "data/folder/a.jsonl"}

    export = tmp_path / "model"
    export.mkdir()

    class Logger:
        logged: list = []

        def log_hyperparams(self, params):
            self.logged.append(params)

    logger = Logger()
    assert provenance.record("data/prepared/lsars.parquet", str(export), [logger])["inputs"][0]["md5"] == _md5(prepared)
    assert json.loads((export / provenance.FILE_NAME).read_text()) == logger.logged[0]["data_version"]


def test_no_data_version_outside_dvc(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert provenance.data_version("reviews.csv") is None
    assert provenance.record("reviews.csv", str(tmp_path), []) is None
    assert not (tmp_path / provenance.FILE_NAME).exists()


def test_missing_input_hint_names_the_command(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    compose_params(tmp_path / "params.yaml")
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/lsars.dvc").write_text("outs:\n- path: lsars\n  md5: x.dir\n")
    monkeypatch.chdir(tmp_path)
    assert provenance.missing_input_hint("data/prepared/lsars.parquet") == (
        "run `dvc pull data/prepared/lsars.parquet` (or `dvc repro prepare_lsars` to make it)")
    assert provenance.missing_input_hint("data/raw/lsars/lsars.jsonl") == "run `dvc pull data/raw/lsars`"
    assert provenance.missing_input_hint("elsewhere.csv") is None
    # train's start-up check says it too, in its one line
    from omegaconf import OmegaConf

    from flavorfusion.checks import check_data_files
    from flavorfusion.errors import DataError

    with pytest.raises(DataError, match=r"^data.path: no file matches .*; run `dvc pull data/prepared/lsars.parquet` "
                                        r"\(or `dvc repro prepare_lsars` to make it\)$"):
        check_data_files(OmegaConf.create({"path": "data/prepared/lsars.parquet"}))


# ---- slow: a real repository ---------------------------------------------------------------------------

# quickstart-sized training and a cheap evaluation; only the test's entry config differs from the project's
TEST_CONFIG = """\
defaults:
  - pipeline
  - override experiment: quickstart
  - _self_
task_name: pipeline
inference: false
data:
  subset: 48
  batch_size: 4
trainer:
  max_epochs: 2
  limit_train_batches: 3
  limit_val_batches: 1
  log_every_n_steps: 1
prepare:
  google_local:
    grouping: none
generation:
  max_new_tokens: 8
  min_new_tokens: 2
latency:
  runs: 1
  new_tokens: 4
zip: false
summarize:
  batch_size: 4
"""

REMOTES = ("storage", "google_local", "lsars", "prepared")
OUTS = ["data/prepared/google_local.parquet", "data/prepared/lsars.parquet", "pipeline/train/model",
        "pipeline/train/metrics.json", "pipeline/evaluate/report.csv", "pipeline/evaluate/report.png",
        "pipeline/evaluate/examples.jsonl", "pipeline/summaries/google_local.parquet",
        "data/raw/google_local", "data/raw/lsars"]


def _env(home: Path) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config"), "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "HYDRA_FULL_ERROR": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # the stages import the repository's own copy of flavorfusion
    return env


class Repo:
    def __init__(self, path: Path, env: dict):
        self.path, self.env = path, env

    def run(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=self.path, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def git(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(*GIT, *args)

    def use_local_remotes(self, remotes: Path) -> None:
        for name in REMOTES:
            self.dvc("remote", "modify", "--local", name, "url", str(remotes / name))


def write_google_local(directory: Path) -> None:
    """Two restaurants of English reviews (no translations: language identification never loads)."""
    directory.mkdir(parents=True)
    meta = [{"name": f"Place {b}", "address": f"{b} Main St", "gmap_id": f"g{b}",
             "category": ["Pizza restaurant"]} for b in (1, 2)]
    reviews = [{"user_id": f"u{b}{i}", "name": "A Reviewer", "time": 1_600_000_000_000 + i, "rating": 5,
                "text": f"Review {i} of place {b}: thin crust, good sauce and quick friendly service.",
                "pics": None, "resp": None, "gmap_id": f"g{b}"} for b in (1, 2) for i in range(4)]
    for name, rows in (("meta.json.gz", meta), ("reviews.json.gz", reviews)):
        with gzip.open(directory / name, "wt") as f:  # gzip without a name/mtime would be nicer; DVC hashes it
            f.write("".join(json.dumps(r) + "\n" for r in rows))


def write_lsars(directory: Path) -> None:
    """The project's shipped sample review groups in LSARS's shape (already-joined texts pass through)."""
    directory.mkdir(parents=True)
    lines = (ROOT / "flavorfusion/resources/quickstart_reviews.jsonl").read_text(encoding="utf-8").splitlines()
    items = [{"item_id": r["id"], "hq_tokens": r["summary"], "lq_tokens_list": r["reviews"]}
             for r in map(json.loads, lines)]
    (directory / "lsars.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items),
                                           encoding="utf-8")


def _files(root: Path, rel: str) -> dict[str, str]:
    path = root / rel
    if path.is_file():
        return {rel: _md5(path)}
    return {p.relative_to(root).as_posix(): _md5(p) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The project's pipeline in a fresh git + DVC repository, reproduced once; the timings of each step."""
    base = tmp_path_factory.mktemp("dvc")
    env = _env(base / "home")
    (base / "home").mkdir()
    repo = Repo(base / "repo", env)
    repo.path.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "flavorfusion"):
        shutil.copytree(ROOT / name, repo.path / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo.path / name)
    (repo.path / "conf/pipeline_test.yaml").write_text(TEST_CONFIG)
    (repo.path / ".gitignore").write_text("__pycache__/\n/pipeline/.work/\n")
    repo.git("init", "-q")
    repo.dvc("init", "-q")
    shutil.copy(ROOT / ".dvc/config", repo.path / ".dvc/config")  # the project's remotes and Hydra settings
    repo.dvc("config", "--local", "hydra.config_name", "pipeline_test")
    repo.use_local_remotes(base / "remotes")

    # params.yaml as `dvc exp run` composes it: every dvc command reads it (dvc.yaml's ${...}); plain `dvc repro`
    # reads the committed one
    compose_params(repo.path / "params.yaml", repo.path / "conf", "pipeline_test")
    write_google_local(repo.path / "data/raw/google_local")
    write_lsars(repo.path / "data/raw/lsars")
    repo.dvc("add", "data/raw/google_local", "data/raw/lsars")
    for name in ("google_local", "lsars"):  # the raw data's own remotes
        dvc_file = repo.path / f"data/raw/{name}.dvc"
        entry = yaml.safe_load(dvc_file.read_text())
        entry["outs"][0]["remote"] = name
        dvc_file.write_text(yaml.safe_dump(entry, sort_keys=False))
    repo.git("add", "-A")
    repo.git("commit", "-qm", "data and pipeline")

    import time

    start = time.perf_counter()
    first = repo.dvc("repro")
    timings = {"repro": time.perf_counter() - start}
    repo.git("add", "-A")
    repo.git("commit", "-qm", "reproduced")
    return {"repo": repo, "base": base, "first": first, "timings": timings}


@pytest.mark.slow
def test_repro_runs_every_stage_and_records_the_data_version(pipeline):
    repo: Repo = pipeline["repo"]
    out = pipeline["first"].stdout
    for stage in ("prepare_google", "prepare_lsars", "train", "evaluate", "summarize"):
        assert f"Running stage '{stage}'" in out
    for rel in OUTS:
        assert (repo.path / rel).exists(), rel
    metrics = json.loads((repo.path / "pipeline/train/metrics.json").read_text())
    assert "val/rougeL" in metrics
    # provenance: the hash dvc.lock holds for the training data (prepare_lsars's out, written before train ran),
    # in the export and in the logger's hyperparameters
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]
    recorded = lock["prepare_lsars"]["outs"][0]["md5"]
    assert {d["path"]: d["md5"] for d in lock["train"]["deps"]}["data/prepared/lsars.parquet"] == recorded
    version = json.loads((repo.path / "pipeline/train/model/data_version.json").read_text())
    assert version == {"inputs": [{"path": "data/prepared/lsars.parquet", "md5": recorded,
                                   "source": "dvc.lock:prepare_lsars", "verified": True}]}
    hparams = (repo.path / "pipeline/.work/train/logs/csv").rglob("hparams.yaml")
    assert any(recorded in p.read_text() for p in hparams)


@pytest.mark.slow
def test_second_repro_runs_nothing(pipeline):
    repo: Repo = pipeline["repo"]
    again = repo.dvc("repro")
    assert "Running stage" not in again.stdout, again.stdout
    assert "up to date" in repo.dvc("status").stdout


@pytest.mark.slow
def test_push_then_pull_in_a_fresh_clone_restores_outputs(pipeline):
    repo: Repo = pipeline["repo"]
    repo.dvc("push")
    for name in REMOTES:  # each remote got its share
        assert any((pipeline["base"] / "remotes" / name).rglob("*")), name
    clone = Repo(pipeline["base"] / "clone", repo.env)
    repo.run(*GIT, "clone", "-q", str(repo.path), str(clone.path))
    assert not (clone.path / "pipeline/train/model").exists()
    clone.use_local_remotes(pipeline["base"] / "remotes")
    clone.dvc("pull")
    for rel in OUTS:
        assert _files(clone.path, rel) == _files(repo.path, rel), rel
    assert "Running stage" not in clone.dvc("repro").stdout  # pulled outputs are up to date


@pytest.mark.slow
def test_unknown_set_param_fails_before_any_stage(pipeline):
    done = pipeline["repo"].dvc("exp", "run", "-S", "prune.amountt=0.5", check=False)
    assert done.returncode != 0
    assert "prune.amountt" in done.stdout + done.stderr
    assert "Running stage" not in done.stdout


def report_rows(text: str) -> list[dict]:
    """evaluate's report.csv without its latency column (a timing: never the same twice)."""
    import csv
    import io

    return [{k: v for k, v in row.items() if k != "latency_s"} for row in csv.DictReader(io.StringIO(text))]


@pytest.mark.slow
def test_experiment_with_pruning_differs_and_is_listed(pipeline):
    repo: Repo = pipeline["repo"]
    baseline = json.loads((repo.path / "pipeline/train/metrics.json").read_text())
    baseline_report = (repo.path / "pipeline/evaluate/report.csv").read_text()
    done = repo.dvc("exp", "run", "-n", "pruned", "-S", "prune.amount=0.5")
    assert "Running stage 'train'" in done.stdout and "Running stage 'evaluate'" in done.stdout
    assert "Running stage 'prepare_lsars'" not in done.stdout  # only what the change reaches
    pruned = json.loads((repo.path / "pipeline/train/metrics.json").read_text())
    assert pruned != baseline
    # the reports differ beyond latency (which differs between any two runs): the pruned model's sparsity
    before, after = report_rows(baseline_report), report_rows((repo.path / "pipeline/evaluate/report.csv").read_text())
    assert [r["variant"] for r in after] == [r["variant"] for r in before]
    assert float(before[0]["sparsity"]) == pytest.approx(0, abs=0.01)
    assert float(after[0]["sparsity"]) == pytest.approx(0.5, abs=0.01)
    # the extractive baselines do not depend on the model: their scores are unchanged
    scores = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    assert [[r[k] for k in scores] for r in after if r["kind"] == "baseline"] == \
        [[r[k] for k in scores] for r in before if r["kind"] == "baseline"]
    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "pruned" in text
    amounts = set(re.findall(r'"amount": ([0-9.]+)', text))
    assert {"0.0", "0.5"} <= amounts, amounts
    table = repo.dvc("exp", "show", "--no-pager", "--md").stdout
    assert "pruned" in table and "workspace" in table
