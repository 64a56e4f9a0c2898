"""Reading a sweep directory: every run it holds, from each source, merged by job number (`read_sweep`).

    runs       <DIR>/<job>/.hydra/{overrides,config,hydra}.yaml, metrics.json, an evaluate report.csv
    Vertex     <DIR>/vertex_jobs.yaml: each job's state, metrics (read from its gs:// output) or error
    Optuna     <DIR>/optuna_journal.log: each trial's state, objective values, error line
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flavorfusion.errors import DataError
from flavorfusion.sweep_files import (
    JOURNAL,
    TRIAL_ERROR,
    TRIAL_INTERRUPTED,
    TRIAL_JOB_DIR,
    TRIAL_OVERRIDES,
    VERTEX_JOBS,
)

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


ROUGE_KEYS = ("best/rougeL", "val/rougeL")  # the exported (best) checkpoint's score first
SIZE_KEY = "model/size_mb"
LATENCY_KEY = "eval/latency_s"
# evaluate's ROUGE-L gap between its best- and worst-served cultural group: shown beside ROUGE-L
SPREAD_KEY = "eval/rougeL_group_spread"
# states, from every source's own names
COMPLETE, FAILED, RUNNING, INTERRUPTED, UNKNOWN = "COMPLETE", "FAILED", "RUNNING", "INTERRUPTED", "NO RESULT"
_VERTEX_STATES = {"SUCCEEDED": COMPLETE, "FAILED": FAILED, "SUBMITTED": RUNNING, "PLANNED": RUNNING,
                  "DRY_RUN": "DRY RUN"}
OUTPUTS = ("study.csv", "study.md", "study_pareto.png", "study_effects.png", "study_importance.png", "best.yaml")


@dataclass
class Run:
    """One job of the sweep, as far as the sources know it."""

    num: int
    state: str = UNKNOWN
    overrides: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    job_dir: str | None = None
    sources: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # the swept settings (overrides that vary)
    pareto: bool = False

    @property
    def rouge_l(self) -> float | None:
        return next((float(self.metrics[k]) for k in ROUGE_KEYS if is_number(self.metrics.get(k))), None)

    def value(self, key: str) -> float | None:
        return float(self.metrics[key]) if is_number(self.metrics.get(key)) else None


@dataclass
class Study:
    """A sweep read back: its runs, the overrides all of them share, and the Optuna study if there is one."""

    sweep_dir: str
    runs: list[Run]
    fixed: list[str]
    optuna_study: Any = None

    @property
    def swept(self) -> list[str]:
        return sorted({k for r in self.runs for k in r.params}, key=_param_order(self.runs))


# ---- reading a sweep ---------------------------------------------------------------------------------

def read_sweep(sweep_dir: str | os.PathLike) -> Study:
    """Every run of the sweep in `sweep_dir`, from all the sources it holds (DataError when it holds none)."""
    sweep_dir = os.fspath(sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise DataError(f"{sweep_dir}: no such sweep directory")
    runs: dict[int, Run] = {}
    for num, job_dir in _local_run_dirs(sweep_dir):
        _merge_local(runs.setdefault(num, Run(num)), job_dir)
    vertex_path = os.path.join(sweep_dir, VERTEX_JOBS)
    if os.path.exists(vertex_path):
        _merge_vertex(runs, vertex_path)
    study = load_optuna_study(sweep_dir)
    if study is not None:
        _merge_optuna(runs, study)
    if not runs:
        raise DataError(f"{sweep_dir}: no runs (no <job>/.hydra/overrides.yaml, {VERTEX_JOBS} or {JOURNAL})")
    ordered = [runs[n] for n in sorted(runs)]
    fixed = _split_params(ordered)
    mark_pareto(ordered)
    return Study(sweep_dir, ordered, fixed, study)


def _local_run_dirs(sweep_dir: str) -> list[tuple[int, str]]:
    found = []
    for overrides in sorted(Path(sweep_dir).glob("**/.hydra/overrides.yaml")):
        job_dir = overrides.parent.parent
        hydra_cfg = load_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
        num = (hydra_cfg.get("hydra") or {}).get("job", {}).get("num")
        if num is None and job_dir.name.isdigit():
            num = int(job_dir.name)
        if num is not None:
            found.append((int(num), str(job_dir)))
    return found


def _merge_local(run: Run, job_dir: str) -> None:
    run.job_dir = job_dir
    run.sources.append("run dir")
    run.overrides = [str(o) for o in load_yaml(Path(job_dir) / ".hydra" / "overrides.yaml") or []]
    metrics_path = Path(job_dir) / "metrics.json"
    if metrics_path.exists():
        try:
            run.metrics.update(json.loads(metrics_path.read_text()))
            run.state = COMPLETE
        except ValueError:
            run.error = f"{metrics_path}: not JSON"
    run.metrics.update(_evaluate_metrics(job_dir))
    if run.state == UNKNOWN:
        run.error = "no metrics.json: still running, or failed (see its train.log)"


def _evaluate_metrics(job_dir: str) -> dict:
    """`eval/*` from an evaluate report in the run's dir (report.csv or evaluate/report.csv): the row of the
    export that would be served (the quantized one when there is one), else the first model row."""
    for path in (Path(job_dir) / "report.csv", Path(job_dir) / "evaluate" / "report.csv"):
        if not path.exists():
            continue
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("kind", "model") == "model"]
        if not rows:
            continue
        quantized = [r for r in rows if os.path.basename(str(r.get("path", "")).rstrip("/")).startswith("model_")]
        row = (quantized or rows)[0]
        return {f"eval/{k}": float(v) for k, v in row.items()
                if k in ("rougeL", "rouge1", "rouge2", "latency_s", "size_mb", "zipped_mb", "rougeL_group_spread",
                         "specific_share") and is_float(v)}
    return {}


def _merge_vertex(runs: dict[int, Run], path: str) -> None:
    jobs = (load_yaml(path) or {}).get("jobs") or []
    for job in jobs:
        run = runs.setdefault(int(job["num"]), Run(int(job["num"])))
        run.sources.append(VERTEX_JOBS)
        run.overrides = run.overrides or [str(o) for o in job.get("overrides") or []]
        run.job_dir = run.job_dir or job.get("output_dir")
        metrics = job.get("metrics")
        if isinstance(metrics, dict):
            run.metrics.update(metrics)
        elif is_number(metrics):  # return_metric: one float
            run.metrics.setdefault("return_value", float(metrics))
        state = _VERTEX_STATES.get(str(job.get("state")), str(job.get("state")))
        if state != COMPLETE or run.state == UNKNOWN:
            run.state = state
        if job.get("error"):
            run.error = str(job["error"])
        elif run.state in (COMPLETE, RUNNING):
            run.error = ""


def load_optuna_study(sweep_dir: str):
    """The Optuna study of the sweep's journal, or None (no journal, or optuna not installed)."""
    path = os.path.join(sweep_dir, JOURNAL)
    if not os.path.exists(path):
        return None
    try:
        import optuna
    except ImportError:
        log.warning("%s exists but optuna is not installed (pip install -e '.[study]'): trials not read", path)
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    names = optuna.get_all_study_names(storage)
    if not names:
        return None
    if len(names) > 1:
        log.warning("%s holds studies %s: reporting %s", path, names, names[-1])
    return optuna.load_study(study_name=names[-1], storage=storage)


def _merge_optuna(runs: dict[int, Run], study) -> None:
    from optuna.trial import TrialState

    for trial in study.trials:
        run = runs.setdefault(trial.number, Run(trial.number))
        run.sources.append("optuna")
        attrs = trial.user_attrs
        run.overrides = run.overrides or [str(o) for o in attrs.get(TRIAL_OVERRIDES) or []]
        run.job_dir = run.job_dir or attrs.get(TRIAL_JOB_DIR)
        if attrs.get(TRIAL_INTERRUPTED):
            run.state = INTERRUPTED
        elif trial.state == TrialState.COMPLETE:
            run.state = COMPLETE
        elif trial.state == TrialState.FAIL:
            run.state = FAILED
        elif trial.state in (TrialState.RUNNING, TrialState.WAITING):
            run.state = RUNNING
        if run.state == RUNNING:
            run.error = ""
        elif trial.state != TrialState.COMPLETE:
            run.error = str(attrs.get(TRIAL_ERROR) or run.error or trial.state.name.lower())
        else:
            run.error = ""
        for name, value in zip(objective_names(study), trial.values or [], strict=False):
            run.metrics.setdefault(name, value)


def objective_names(study) -> list[str]:
    names = study.metric_names
    return list(names) if names else [f"objective_{i}" for i in range(len(study.directions))]


def _split_params(runs: list[Run]) -> list[str]:
    """Set each run's `params` to the overrides that vary across runs; returns those every run shares."""
    parsed = [dict(_parse_override(o) for o in r.overrides) for r in runs]
    keys = {k for p in parsed for k in p}
    varying = {k for k in keys if len({repr(p.get(k)) for p in parsed}) > 1}
    for run, p in zip(runs, parsed, strict=True):
        run.params = {k: v for k, v in p.items() if k in varying}
    shared = runs[0].overrides if runs else []
    return [o for o in shared if _parse_override(o)[0] not in varying]


def _parse_override(override: str) -> tuple[str, Any]:
    key, _, value = override.partition("=")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.lstrip("+~"), parsed


def _param_order(runs: list[Run]):
    order = {}
    for run in runs:
        for o in run.overrides:
            order.setdefault(_parse_override(o)[0], len(order))
    return lambda k: order.get(k, len(order))



def swept_overrides(run: Run, study: Study, last_part: bool = False) -> list[str]:
    """`key=value` of the run's swept settings; `last_part`: the last part of each key (plot labels)."""
    return [f"{k.split('.')[-1] if last_part else k}={short(run.params[k])}" for k in study.swept if k in run.params]



# ---- small helpers -----------------------------------------------------------------------------------

def load_yaml(path: str | os.PathLike) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_float(text: Any) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def mark_pareto(runs: list[Run], x_key: str = SIZE_KEY) -> None:
    """A complete run is on the front when no other run dominates it: at least its ROUGE-L at no more size,
    better in one. A missing size counts as equal (without sizes the front is the best ROUGE-L)."""
    scored = [r for r in runs if r.state == COMPLETE and r.rouge_l is not None]

    def dominates(a: Run, b: Run) -> bool:
        xa, xb = a.value(x_key), b.value(x_key)
        smaller = xa is not None and xb is not None and xa < xb
        no_larger = xa is None or xb is None or xa <= xb
        return a.rouge_l >= b.rouge_l and no_larger and (a.rouge_l > b.rouge_l or smaller)

    for run in runs:
        run.pareto = run in scored and not any(dominates(o, run) for o in scored if o is not run)


# ---- choosing ----------------------------------------------------------------------------------------
