"""One report for a sweep, finished or running: `python -m flavorfusion.study DIR` calls `report(DIR)`.

It reads every source a sweep directory may hold, merged by job number:

    runs       <DIR>/<job>/.hydra/{overrides,config,hydra}.yaml, metrics.json, an evaluate report.csv
    Vertex     <DIR>/vertex_jobs.yaml: each job's state, metrics (read from its gs:// output) or error
    Optuna     <DIR>/optuna_journal.log: each trial's state, objective values, error line

and writes beside them (each file atomically): study.csv and study.md (one row per run, failed and
unfinished ones included), study_pareto.png (ROUGE-L against size or latency, runs labelled by their swept
settings), study_effects.png (ROUGE-L against each swept setting), study_importance.png (Optuna's parameter
importances, with a study), and best.yaml (an experiment config reproducing the chosen run).
"""

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from flavorfusion.errors import DataError
from flavorfusion.io import atomic_output

log = logging.getLogger(__name__)

JOURNAL = "optuna_journal.log"  # the optuna_journal sweeper's file (hydra_plugins/optuna_journal_sweeper)
VERTEX_JOBS = "vertex_jobs.yaml"
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
        return next((float(self.metrics[k]) for k in ROUGE_KEYS if _is_number(self.metrics.get(k))), None)

    def value(self, key: str) -> float | None:
        return float(self.metrics[key]) if _is_number(self.metrics.get(key)) else None


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
    _mark_pareto(ordered)
    return Study(sweep_dir, ordered, fixed, study)


def _local_run_dirs(sweep_dir: str) -> list[tuple[int, str]]:
    found = []
    for overrides in sorted(Path(sweep_dir).glob("**/.hydra/overrides.yaml")):
        job_dir = overrides.parent.parent
        hydra_cfg = _load_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
        num = (hydra_cfg.get("hydra") or {}).get("job", {}).get("num")
        if num is None and job_dir.name.isdigit():
            num = int(job_dir.name)
        if num is not None:
            found.append((int(num), str(job_dir)))
    return found


def _merge_local(run: Run, job_dir: str) -> None:
    run.job_dir = job_dir
    run.sources.append("run dir")
    run.overrides = [str(o) for o in _load_yaml(Path(job_dir) / ".hydra" / "overrides.yaml") or []]
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
                         "specific_share") and _is_float(v)}
    return {}


def _merge_vertex(runs: dict[int, Run], path: str) -> None:
    jobs = (_load_yaml(path) or {}).get("jobs") or []
    for job in jobs:
        run = runs.setdefault(int(job["num"]), Run(int(job["num"])))
        run.sources.append(VERTEX_JOBS)
        run.overrides = run.overrides or [str(o) for o in job.get("overrides") or []]
        run.job_dir = run.job_dir or job.get("output_dir")
        metrics = job.get("metrics")
        if isinstance(metrics, dict):
            run.metrics.update(metrics)
        elif _is_number(metrics):  # return_metric: one float
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
        run.overrides = run.overrides or [str(o) for o in attrs.get("overrides") or []]
        run.job_dir = run.job_dir or attrs.get("job_dir")
        if attrs.get("interrupted"):
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
            run.error = str(attrs.get("error") or run.error or trial.state.name.lower())
        else:
            run.error = ""
        for name, value in zip(_objective_names(study), trial.values or [], strict=False):
            run.metrics.setdefault(name, value)


def _objective_names(study) -> list[str]:
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


def _mark_pareto(runs: list[Run], x_key: str = SIZE_KEY) -> None:
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
    hydra_cfg = (_load_yaml(job / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
    run_cfg = _load_yaml(job / ".hydra" / "config.yaml")
    if run_cfg is None or not hydra_cfg:
        raise DataError(f"run #{run.num}: {job}/.hydra/config.yaml and hydra.yaml are needed to write best.yaml")
    skip = ("experiment", "hparams_search", "hydra")
    choices = {k: v for k, v in (hydra_cfg.get("runtime", {}).get("choices") or {}).items()
               if v is not None and k not in skip and not k.startswith("hydra/")}
    base = _compose(hydra_cfg.get("job", {}).get("config_name") or "train", choices)
    delta = _difference(run_cfg, base)
    summary = ", ".join(f"{k}={_short(v)}" for k, v in run.params.items())
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


# ---- writing the report ------------------------------------------------------------------------------

def report(sweep_dir: str | os.PathLike, pick: int | None = None, max_size_mb: float | None = None,
           wandb: str = "auto") -> dict[str, str]:
    """Read the sweep, write every output beside it, log them to W&B when asked; returns {name: path}."""
    sweep_dir = os.fspath(sweep_dir)
    study = read_sweep(sweep_dir)
    table = to_frame(study)
    paths = {name: os.path.join(sweep_dir, name) for name in OUTPUTS}
    with atomic_output(paths["study.csv"]) as tmp:
        table.to_csv(tmp, index=False)
    chosen = choose(study, pick, max_size_mb)
    written = {"study.csv": paths["study.csv"]}
    if chosen is not None and chosen.job_dir and all(
            os.path.exists(os.path.join(chosen.job_dir, ".hydra", name)) for name in ("config.yaml", "hydra.yaml")):
        with atomic_output(paths["best.yaml"]) as tmp, open(tmp, "w") as f:
            f.write(best_experiment(chosen, sweep_dir))
        written["best.yaml"] = paths["best.yaml"]
    importances = optuna_importances(study)
    with atomic_output(paths["study_pareto.png"]) as tmp, open(tmp, "wb") as f:
        plot_pareto(study, f, chosen)
    written["study_pareto.png"] = paths["study_pareto.png"]
    if study.swept and any(r.rouge_l is not None for r in study.runs):
        with atomic_output(paths["study_effects.png"]) as tmp, open(tmp, "wb") as f:
            plot_effects(study, f)
        written["study_effects.png"] = paths["study_effects.png"]
    if importances is not None and not importances.empty:
        with atomic_output(paths["study_importance.png"]) as tmp, open(tmp, "wb") as f:
            plot_importances(importances, f)
        written["study_importance.png"] = paths["study_importance.png"]
    with atomic_output(paths["study.md"]) as tmp, open(tmp, "w") as f:
        f.write(markdown(study, table, chosen, importances, written))
    written["study.md"] = paths["study.md"]
    if _wants_wandb(study, wandb):
        log_to_wandb(study, table, {k: v for k, v in written.items() if k.endswith(".png")})
    return written


def to_frame(study: Study):
    """One row per run: number, state, swept settings, ROUGE-L, size, latency, the other metrics, error,
    the swept overrides and all overrides."""
    import pandas as pd

    metric_keys = sorted({k for r in study.runs for k, v in r.metrics.items() if _is_number(v)}
                         - {SIZE_KEY, LATENCY_KEY, SPREAD_KEY, *ROUGE_KEYS})
    rows = []
    for r in study.runs:
        row = {"run": r.num, "state": r.state, "pareto": r.pareto}
        row.update({k: r.params.get(k) for k in study.swept})
        row.update({"rougeL": r.rouge_l, "rougeL_group_spread": r.value(SPREAD_KEY), "size_mb": r.value(SIZE_KEY),
                    "latency_s": r.value(LATENCY_KEY)})
        row.update({k: r.value(k) for k in ROUGE_KEYS})
        row.update({k: r.value(k) for k in metric_keys})
        row.update({"error": r.error, "swept": " ".join(_swept_overrides(r, study)),
                    "overrides": " ".join(r.overrides), "job_dir": r.job_dir or "", "sources": "+".join(r.sources)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.dropna(axis=1, how="all") if len(frame) else frame


def _swept_overrides(run: Run, study: Study, short: bool = False) -> list[str]:
    """`key=value` of the run's swept settings; `short`: the last part of each key (plot labels)."""
    return [f"{k.split('.')[-1] if short else k}={_short(run.params[k])}" for k in study.swept if k in run.params]


def optuna_importances(study: Study):
    """Optuna's parameter importances (fANOVA) per objective, as a frame (param x objective), or None."""
    if study.optuna_study is None:
        return None
    import optuna
    import pandas as pd
    from optuna.trial import TrialState

    complete = study.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return None
    columns = {}
    for i, name in enumerate(_objective_names(study.optuna_study)):
        try:  # fANOVA, seeded: the same study gives the same importances
            columns[name] = optuna.importance.get_param_importances(
                study.optuna_study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=lambda t, i=i: t.values[i])
        except (RuntimeError, ValueError) as err:  # e.g. no parameter varied over the complete trials
            log.warning("importances for %s: %s", name, err)
    return pd.DataFrame(columns) if columns else None


def markdown(study: Study, table, chosen: Run | None, importances, written: dict[str, str]) -> str:
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    lines = [f"# Study: {os.path.abspath(study.sweep_dir)}", "",
             f"{len(study.runs)} runs: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
             + ". Sources: " + ", ".join(sorted({s for r in study.runs for s in r.sources})) + ".", ""]
    if study.fixed:
        lines += ["Every run: `" + " ".join(study.fixed) + "`", ""]
    lines += ["ROUGE-L is the exported checkpoint's (`best/rougeL`, else `val/rougeL`); size is MB of weights of "
              "the export that would be served (`model/size_mb`: the quantized one when `quantize` is set); "
              "rougeL_group_spread, where an evaluate report has it, is the ROUGE-L gap between the best- and "
              "worst-served cultural group.", ""]
    columns = ["run", "state", "pareto", *study.swept, "rougeL", "rougeL_group_spread", "size_mb", "latency_s", "error"]
    columns = [c for c in columns if c in table.columns]
    lines += [_md_table(table, columns), ""]
    front = [r for r in study.runs if r.pareto]
    if front:
        lines += ["## Pareto front (ROUGE-L up, size down)", ""]
        lines += [f"- #{r.num}: ROUGE-L {r.rouge_l:.2f}" + (f", {r.value(SIZE_KEY):.3f} MB" if r.value(SIZE_KEY)
                  is not None else "") + f" — {' '.join(_swept_overrides(r, study))}" for r in front]
        lines.append("")
    not_done = [r for r in study.runs if r.state != COMPLETE]
    if not_done:
        lines += ["## Failed and unfinished runs", ""]
        lines += [f"- #{r.num} {r.state}: {r.error or ('still running' if r.state == RUNNING else '(no error recorded)')}" for r in not_done]
        lines.append("")
    if chosen is not None:
        lines += ["## Chosen", "",
                  f"Run #{chosen.num} ({' '.join(_swept_overrides(chosen, study))}): ROUGE-L {chosen.rouge_l:.2f}"
                  + (f", {chosen.value(SIZE_KEY):.3f} MB" if chosen.value(SIZE_KEY) is not None else "") + ".",
                  "best.yaml reproduces it: copy it to conf/experiment/<name>.yaml and run "
                  "`python -m flavorfusion.train experiment=<name>`." if "best.yaml" in written else
                  "(no .hydra/ record of it here: best.yaml not written)", ""]
    if importances is not None and not importances.empty:
        lines += ["## Parameter importances (Optuna, fANOVA)", "",
                  _md_table(importances.reset_index(names="parameter"), ["parameter", *importances.columns]), ""]
    lines += ["## Files", ""] + [f"- {name}" for name in written if name != "study.md"] + [""]
    return "\n".join(lines)


def _md_table(frame, columns: list[str]) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    return "\n".join(lines)


# ---- plots -------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(study: Study, file, chosen: Run | None) -> None:
    """ROUGE-L against size (and against latency where an evaluate report gave one); the front joined by a
    step line; each run labelled `#num` with its swept settings in the legend."""
    plt = _pyplot()
    scored = [r for r in study.runs if r.state == COMPLETE and r.rouge_l is not None]
    axes_keys = [(SIZE_KEY, "size of the served export (MB)")]
    if any(r.value(LATENCY_KEY) is not None for r in scored):
        axes_keys.append((LATENCY_KEY, "CPU seconds per summary (evaluate)"))
    legend_rows = len(scored)
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(7 * len(axes_keys) + 1, 4.6 + 0.2 * legend_rows),
                             squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for ax, (key, label) in zip(axes[0], axes_keys, strict=True):
        points = [(r, r.value(key)) for r in scored if r.value(key) is not None]
        for i, (r, x) in enumerate(points):
            ax.scatter(x, r.rouge_l, s=90 if r.pareto else 45, color=colors[i % len(colors)],
                       edgecolors="black" if r.pareto else "none", linewidths=1.2, zorder=3,
                       label=f"#{r.num}  " + "  ".join(_swept_overrides(r, study, short=True)))
            ax.annotate(f"#{r.num}", (x, r.rouge_l), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = sorted((x, r.rouge_l) for r, x in points if r.pareto)
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", linestyle="--",
                    linewidth=1, zorder=2, label="_front")
        if chosen is not None and chosen.value(key) is not None:
            ax.scatter(chosen.value(key), chosen.rouge_l, s=260, facecolors="none", edgecolors="red", linewidths=1.5,
                       zorder=4, label="_chosen")
        ax.set_xlabel(label)
        ax.set_ylabel("ROUGE-L (exported checkpoint)")
        ax.grid(alpha=0.3)
    missing = len(study.runs) - len(scored)
    title = f"{os.path.basename(os.path.normpath(study.sweep_dir))}: {len(scored)} scored runs"
    title += f"; {missing} failed or unfinished, not drawn (study.md lists them)" if missing else ""
    title += "\nblack edge: Pareto front; red ring: the chosen run (best.yaml)"
    fig.suptitle(title, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    bottom = (0.3 + 0.2 * legend_rows) / (4.6 + 0.2 * legend_rows)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 0.94))
    fig.savefig(file, dpi=110, format="png")
    plt.close(fig)


def plot_effects(study: Study, file) -> None:
    """ROUGE-L against each swept setting, one panel each: points per run, the mean per value as a line."""
    plt = _pyplot()
    params = study.swept
    scored = [r for r in study.runs if r.state == COMPLETE and r.rouge_l is not None]
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, params, strict=False):
        values = [(r.params.get(key), r.rouge_l) for r in scored if key in r.params]
        numeric = all(_is_number(v) for v, _ in values)
        if numeric:
            xs = [float(v) for v, _ in values]
            ax.scatter(xs, [y for _, y in values], alpha=0.8)
            if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v, _ in values})
            ax.scatter([labels.index(str(v)) for v, _ in values], [y for _, y in values], alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        means = {}
        for v, y in values:
            means.setdefault(float(v) if numeric else str(v), []).append(y)
        if len(means) < len(values):  # repeated values: draw their mean
            keys = sorted(means) if numeric else sorted(means)
            xs = keys if numeric else [sorted({str(v) for v, _ in values}).index(k) for k in keys]
            ax.plot(xs, [sum(means[k]) / len(means[k]) for k in keys], color="gray", linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("ROUGE-L")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(file, dpi=110, format="png")
    plt.close(fig)


def plot_importances(importances, file) -> None:
    plt = _pyplot()
    ax = importances.sort_values(importances.columns[0]).plot.barh(figsize=(7, 1 + 0.45 * len(importances)))
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_title("Optuna parameter importances", fontsize=10)
    ax.figure.tight_layout()
    ax.figure.savefig(file, dpi=110, format="png")
    plt.close(ax.figure)


# ---- W&B ---------------------------------------------------------------------------------------------

def _run_config(study: Study) -> dict:
    for run in study.runs:
        cfg = _load_yaml(Path(run.job_dir or "") / ".hydra" / "config.yaml") if run.job_dir else None
        if cfg:
            return cfg
    return {}


def _wants_wandb(study: Study, wandb: str) -> bool:
    """`auto`: when the sweep's runs logged to W&B (`logger=wandb`)."""
    if wandb in ("on", "off"):
        return wandb == "on"
    return "wandb" in (_run_config(study).get("logger") or {})


def wandb_group(study: Study) -> str:
    from flavorfusion.tracking import sweep_group_name

    cfg = _run_config(study)
    if cfg.get("group"):
        return str(cfg["group"])
    job_name = cfg.get("task_name") or "train"
    for run in study.runs:
        hydra_cfg = _load_yaml(Path(run.job_dir or "") / ".hydra" / "hydra.yaml") if run.job_dir else None
        if hydra_cfg:
            job_name = hydra_cfg["hydra"]["job"]["name"]
            break
    return sweep_group_name(job_name, study.sweep_dir)


def log_to_wandb(study: Study, table, images: dict[str, str]) -> None:
    """The table and plots as one `study` run in the sweep's W&B group; offline without a key."""
    import wandb

    from flavorfusion.tracking import has_wandb_credentials

    cfg = (_run_config(study).get("logger") or {}).get("wandb") or {}
    offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not has_wandb_credentials()
    project = cfg.get("project") if isinstance(cfg.get("project"), str) else "FlavorFusion"
    group = wandb_group(study)
    run = wandb.init(project=project, group=group, job_type="study", dir=study.sweep_dir,
                     name=f"study-{os.path.basename(os.path.normpath(study.sweep_dir))}",
                     mode="offline" if offline else "online", reinit="finish_previous")
    try:
        run.log({"study/runs": wandb.Table(dataframe=table.astype(str)),
                 **{f"study/{Path(name).stem}": wandb.Image(path) for name, path in images.items()}})
    finally:
        run.finish()
    log.info("logged the study to W&B group %s (%s)", group, "offline" if offline else "online")


# ---- small helpers -----------------------------------------------------------------------------------

def _load_yaml(path: str | os.PathLike) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_float(text: Any) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
