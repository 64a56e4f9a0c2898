"""Writing the report of a sweep (`report`): study.csv and study.md (one row per run, failed and unfinished ones
included), the plots, best.yaml, and the W&B table; each file written atomically."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from flavorfusion.io import atomic_output
from flavorfusion.studies.choose import best_experiment, choose
from flavorfusion.studies.plots import plot_effects, plot_importances, plot_pareto
from flavorfusion.studies.sweep import (
    COMPLETE,
    LATENCY_KEY,
    OUTPUTS,
    ROUGE_KEYS,
    RUNNING,
    SIZE_KEY,
    SPREAD_KEY,
    Run,
    Study,
    is_number,
    load_yaml,
    objective_names,
    read_sweep,
    swept_overrides,
)

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


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

    metric_keys = sorted({k for r in study.runs for k, v in r.metrics.items() if is_number(v)}
                         - {SIZE_KEY, LATENCY_KEY, SPREAD_KEY, *ROUGE_KEYS})
    rows = []
    for r in study.runs:
        row = {"run": r.num, "state": r.state, "pareto": r.pareto}
        row.update({k: r.params.get(k) for k in study.swept})
        row.update({"rougeL": r.rouge_l, "rougeL_group_spread": r.value(SPREAD_KEY), "size_mb": r.value(SIZE_KEY),
                    "latency_s": r.value(LATENCY_KEY)})
        row.update({k: r.value(k) for k in ROUGE_KEYS})
        row.update({k: r.value(k) for k in metric_keys})
        row.update({"error": r.error, "swept": " ".join(swept_overrides(r, study)),
                    "overrides": " ".join(r.overrides), "job_dir": r.job_dir or "", "sources": "+".join(r.sources)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.dropna(axis=1, how="all") if len(frame) else frame


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
    for i, name in enumerate(objective_names(study.optuna_study)):
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
                  is not None else "") + f" — {' '.join(swept_overrides(r, study))}" for r in front]
        lines.append("")
    not_done = [r for r in study.runs if r.state != COMPLETE]
    if not_done:
        lines += ["## Failed and unfinished runs", ""]
        lines += [f"- #{r.num} {r.state}: {r.error or ('still running' if r.state == RUNNING else '(no error recorded)')}" for r in not_done]
        lines.append("")
    if chosen is not None:
        lines += ["## Chosen", "",
                  f"Run #{chosen.num} ({' '.join(swept_overrides(chosen, study))}): ROUGE-L {chosen.rouge_l:.2f}"
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



# ---- W&B ---------------------------------------------------------------------------------------------

def _run_config(study: Study) -> dict:
    for run in study.runs:
        cfg = load_yaml(Path(run.job_dir or "") / ".hydra" / "config.yaml") if run.job_dir else None
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
        hydra_cfg = load_yaml(Path(run.job_dir or "") / ".hydra" / "hydra.yaml") if run.job_dir else None
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
