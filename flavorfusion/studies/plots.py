"""The study's plots: ROUGE-L against size or latency (the Pareto front), against each swept setting, and Optuna's
parameter importances."""

from __future__ import annotations

import logging
import math
import os

from flavorfusion.studies.sweep import COMPLETE, LATENCY_KEY, SIZE_KEY, Run, Study, is_number, swept_overrides

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


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
                       label=f"#{r.num}  " + "  ".join(swept_overrides(r, study, last_part=True)))
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
        numeric = all(is_number(v) for v, _ in values)
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
