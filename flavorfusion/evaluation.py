"""One report comparing summarizer variants (exports, pruned and quantized ones, extractive baselines)
on one data split: quality (ROUGE, and per cultural group), group specificity, size, sparsity and CPU latency.
`flavorfusion.evaluate` runs it."""

import csv
import json
import logging
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from flavorfusion import contrast
from flavorfusion.baselines import LexRank
from flavorfusion.compression import measures
from flavorfusion.config.generation import GenerationConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable, in_validation
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import DataError
from flavorfusion.io import atomic_output
from flavorfusion.models.runtime import InferenceRuntime, Placement
from flavorfusion.rouge import SCORE_NAMES, rouge_per_example
from flavorfusion.runs import instantiate_nodes

log = logging.getLogger(__name__)



def load_groups(data: DictConfig, split: str) -> list[ReviewGroup]:
    """Review groups of `split` with the data config's column mapping: `validation` is the held-out
    split of training (same hash of the id, data.seed and data.test_ratio); `all` every group."""
    groups, _ = ReviewTable.from_config(data).groups()
    if split == "validation":
        groups = [g for g in groups if in_validation(g.id, data.seed, data.test_ratio)]
    groups = [g for g in groups if g.summary]
    if not groups:
        raise DataError(f"no review group with a reference summary in split={split} of data.path={data.path}")
    return groups


@dataclass
class Result:
    """One row of the report."""

    variant: str
    kind: str  # model | baseline
    path: str = ""
    rouge1: float = 0.0
    rouge2: float = 0.0
    rougeL: float = 0.0
    rougeLsum: float = 0.0
    rouge1_max: float = 0.0  # the best reference of each example (rouge1..rougeLsum: metrics.multi_reference)
    rouge2_max: float = 0.0
    rougeL_max: float = 0.0
    rougeLsum_max: float = 0.0
    multi_reference: str = "mean"  # how rouge1..rougeLsum combine an example's references: mean | max
    size_mb: float = 0.0
    zipped_mb: float | None = None
    sparsity: float | None = None
    ffn_neurons: int | None = None
    latency_s: float = 0.0
    n_examples: int = 0
    # on data with business_id and group: the share of summaries closest to their own group's reviews, chance beside
    # it and the mean margin (flavorfusion.contrast); the ROUGE-L gap between the best- and worst-served group
    specific_share: float | None = None
    specificity_chance: float | None = None
    specificity_margin: float | None = None
    rougeL_group_spread: float | None = None
    deltas: dict = field(default_factory=dict)
    by_group: list[dict] = field(default_factory=list)
    specificity: dict | None = None


def _median_seconds(fn, runs: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# evaluate scores and times every variant on the CPU: its latency column is CPU seconds per summary
PLACEMENT = Placement(device="cpu", dtype="auto")


class ModelVariant:
    """A seq2seq export (fp, pruned or quantized) generating from PRIMERA-encoded review groups, through the one
    inference runtime (as summarize and serve generate)."""

    kind = "model"

    def __init__(self, name: str, runtime: InferenceRuntime, path: str = ""):
        self.name, self.runtime, self.path = name, runtime.load(), path

    def summarize(self, groups: list[ReviewGroup], batch_size: int) -> list[str]:
        features = self.runtime.encode(groups)
        return [text for i in range(0, len(features), batch_size)
                for text in self.runtime.generate(features[i : i + batch_size])]

    def latency(self, group: ReviewGroup, new_tokens: int, runs: int) -> float:
        features = self.runtime.encode([group])
        fixed = GenerationConf(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=1)
        return _median_seconds(lambda: self.runtime.generate(features, fixed), runs)

    def measure(self, result: Result, suffixes, zip_it: bool) -> None:
        if self.path and os.path.isdir(self.path):
            result.size_mb = measures.size_on_disk(self.path) / 1e6
            result.zipped_mb = measures.zipped_size(self.path) / 1e6 if zip_it else None
        result.sparsity = measures.sparsity(self.runtime.model, suffixes)
        result.ffn_neurons = measures.ffn_neurons(self.runtime.model)


class BaselineVariant:
    """An extractive baseline (no weights)."""

    kind = "baseline"

    def __init__(self, name: str, baseline, data: DictConfig):
        self.name, self.baseline, self.data, self.path = name, baseline, data, ""

    def summarize(self, groups: list[ReviewGroup], batch_size: int) -> list[str]:
        selection = ReviewSelection.from_config(self.data)
        return [self.baseline.summarize(selection.for_validation(g), g.id) for g in groups]

    def latency(self, group: ReviewGroup, new_tokens: int, runs: int) -> float:
        reviews = ReviewSelection.from_config(self.data).for_validation(group)
        return _median_seconds(lambda: self.baseline.summarize(reviews, group.id), runs)

    def measure(self, result: Result, suffixes, zip_it: bool) -> None:
        pass  # no weights: size 0


def _label(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return "/".join(parts[-2:]) if len(parts) > 1 else path


def build_variants(cfg: DictConfig):
    """`model` first (the parent every delta is measured against), then `models`, then `baselines`."""
    data, model_cfg = cfg.data, cfg.model
    if model_cfg.get("trainable", True) is False:
        baseline = _instantiate_baseline(model_cfg)
        yield BaselineVariant(baseline.name, baseline, data)
    elif "name_or_path" in model_cfg:
        yield _model_variant(cfg, model_cfg.name_or_path, "model.name_or_path")
    else:  # e.g. model=tiny: a Summarizer built from config
        summarizer = instantiate(model_cfg, _convert_="all", generation=cfg.generation)
        name = model_cfg._target_.rsplit(".", 1)[-1]
        yield ModelVariant(name, InferenceRuntime.from_model(summarizer.model, summarizer.tokenizer,
                                                             summarizer.generation, data, name, PLACEMENT))
    for i, entry in enumerate(cfg.models or []):
        yield _model_variant(cfg, entry, f"models[{i}]")
    first = cfg.model.get("_target_") if cfg.model.get("trainable", True) is False else None
    for name, node in (cfg.baselines or {}).items():
        if node is not None and node.get("_target_") != first:  # model=lexrank: scored once, first
            yield BaselineVariant(name, _instantiate_baseline(node), data)


def _model_variant(cfg: DictConfig, name_or_path: str, key: str) -> "ModelVariant":
    """A model source (`model.name_or_path` or an entry of `models`) loaded as a variant; its size is measured when
    it is a local directory."""
    runtime = InferenceRuntime.from_config(cfg, name_or_path, key, PLACEMENT)
    source = runtime.source
    return ModelVariant(_label(source.location), runtime, source.location if source.kind == "local" else "")


def _instantiate_baseline(node: DictConfig):
    node = OmegaConf.to_container(node, resolve=True)
    node.pop("trainable", None)
    return instantiate(node)


def rouge_by_group(groups: list[ReviewGroup], scores: list[dict]) -> list[dict]:
    """n and mean ROUGE-1/2/L of each cultural group (`group`; groups without a label are left out), best R-L first."""
    by_label: dict[str, list[dict]] = {}
    for group, score in zip(groups, scores, strict=True):
        if group.group is not None:
            by_label.setdefault(str(group.group), []).append(score)
    rows = [{"group": label, "n": len(found), **{name: statistics.mean(s[name] for s in found)
                                                 for name in ("rouge1", "rouge2", "rougeL")}}
            for label, found in by_label.items()]
    return sorted(rows, key=lambda row: (-row["rougeL"], row["group"]))


def group_spread(by_group: list[dict]) -> float | None:
    """ROUGE-L of the best-served group minus the worst-served's (None below two groups)."""
    return by_group[0]["rougeL"] - by_group[-1]["rougeL"] if len(by_group) >= 2 else None


def has_restaurants(groups: list[ReviewGroup]) -> bool:
    return any(len(r) >= 2 for r in contrast.by_restaurant(groups).values())


def specificity_of(groups: list[ReviewGroup], predictions: list[str], selection: ReviewSelection) -> dict:
    return contrast.table_specificity(groups, {g.id: p for g, p in zip(groups, predictions, strict=True)}, selection)


def reference_points(groups: list[ReviewGroup], selection: ReviewSelection, lexrank: LexRank) -> dict[str, dict]:
    """Specificity of two extractive summaries on the same groups: one LexRank summary per restaurant shared by all
    its groups (the floor: chance by construction) and LexRank within each group (a strong reference point)."""
    shared = {}
    for restaurant in contrast.by_restaurant(groups).values():
        text = lexrank.summarize([r for g in sorted(restaurant, key=lambda g: g.id) for r in selection.for_validation(g)])
        shared.update({g.id: text for g in restaurant})
    within = {g.id: lexrank.summarize(selection.for_validation(g), g.id) for g in groups}
    return {"shared LexRank per restaurant (floor)": contrast.table_specificity(groups, shared, selection),
            "LexRank within each group": contrast.table_specificity(groups, within, selection)}


def score_variants(cfg: DictConfig) -> tuple[list[Result], list[dict]]:
    """Score every variant; returns the report rows and one record per (variant, example)."""
    multi_reference = cfg.metrics.multi_reference
    if cfg.latency.threads:
        torch.set_num_threads(cfg.latency.threads)
    groups = load_groups(cfg.data, cfg.split)
    log.info("evaluating on %d review groups (split=%s)", len(groups), cfg.split)
    selection = ReviewSelection.from_config(cfg.data)
    restaurants = cfg.contrast.enabled and has_restaurants(groups)
    results, examples = [], []
    for variant in build_variants(cfg):
        log.info("variant %s", variant.name)
        predictions = variant.summarize(groups, cfg.batch_size)
        scores = [rouge_per_example(p, g.summary, multi_reference, with_max=True)
                  for p, g in zip(predictions, groups, strict=True)]
        result = Result(variant.name, variant.kind, variant.path, n_examples=len(groups),
                        multi_reference=multi_reference,
                        **{name: statistics.mean(s[name] for s in scores) for name in SCORE_NAMES})
        result.by_group = rouge_by_group(groups, scores)
        result.rougeL_group_spread = group_spread(result.by_group)
        if restaurants:
            set_specificity(result, specificity_of(groups, predictions, selection))
        variant.measure(result, None if cfg.sparsity_suffixes is None else list(cfg.sparsity_suffixes), cfg.zip)
        result.latency_s = variant.latency(groups[0], cfg.latency.new_tokens, cfg.latency.runs)
        results.append(result)
        examples += [{"variant": variant.name, "id": g.id, "prediction": p, "references": g.summary, **s}
                     for p, g, s in zip(predictions, groups, scores, strict=True)]
        del variant  # one model in memory at a time
    parent = next((r for r in results if r.kind == "model"), None)
    for r in results:
        if parent is not None and r is not parent:
            r.deltas = {name: getattr(r, name) - getattr(parent, name) for name in ("rouge1", "rouge2", "rougeL")}
    if restaurants:
        lexrank = _instantiate_baseline(cfg.baselines.lexrank) if cfg.baselines.get("lexrank") else LexRank()
        for name, report in reference_points(groups, selection, lexrank).items():
            reference = Result(name, "reference point", n_examples=len(groups))
            set_specificity(reference, report)
            results.append(reference)
    return results, examples


def set_specificity(result: Result, report: dict) -> None:
    result.specificity = report
    result.specific_share, result.specificity_chance = report["share_specific"], report["chance"]
    result.specificity_margin = report["mean_margin"]


# ---- outputs ---------------------------------------------------------------------------------------

COLUMNS = ["variant", "kind", "rouge1", "rouge2", "rougeL", "rougeLsum", "rouge1_max", "rouge2_max", "rougeL_max",
           "rougeLsum_max", "d_rouge1", "d_rouge2", "d_rougeL", "rougeL_group_spread", "specific_share",
           "specificity_chance", "specificity_margin", "size_mb", "zipped_mb", "sparsity", "ffn_neurons",
           "latency_s", "n_examples", "multi_reference", "path"]
SCORED = ("model", "baseline")  # kinds with ROUGE; a "reference point" has specificity only


def _row(r: Result) -> dict:
    row = {k: v for k, v in asdict(r).items() if k not in ("deltas", "by_group", "specificity")}
    row.update({f"d_{k}": v for k, v in r.deltas.items()})
    return {c: row.get(c) for c in COLUMNS}


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def milestone_table(results: list[Result]) -> str:
    """The original code's milestone table: model, zipped size, ROUGE-1/2/L, inference time."""
    rows = [[r.variant, r.zipped_mb if r.kind == "model" else None, r.rouge1, r.rouge2, r.rougeL, r.latency_s]
            for r in results if r.kind in SCORED]
    return markdown_table(["model", "zipped size (MB)", "ROUGE-1", "ROUGE-2", "ROUGE-L", "inference time (s)"], rows)


def report_table(results: list[Result]) -> str:
    rows = []
    for r in (r for r in results if r.kind in SCORED):
        d = r.deltas
        rows.append([r.variant, r.kind, r.rouge1, r.rouge2, r.rougeL, r.rougeLsum, r.rouge1_max, r.rouge2_max,
                     r.rougeL_max, f"{d['rougeL']:+.2f}" if d else "", r.rougeL_group_spread,
                     r.size_mb if r.kind == "model" else None, r.zipped_mb,
                     None if r.sparsity is None else 100 * r.sparsity, r.ffn_neurons, r.latency_s])
    return markdown_table(["variant", "kind", "R-1", "R-2", "R-L", "R-Lsum", "R-1 max", "R-2 max", "R-L max",
                           "ΔR-L vs parent", "R-L group spread", "size (MB)", "zipped (MB)", "sparsity (%)",
                           "FFN neurons", "latency (s)"], rows)


def specificity_table(results: list[Result]) -> str:
    """Group specificity of every variant and of the two reference points, as percentages."""
    rows = [[r.variant, r.kind, 100 * r.specific_share, 100 * r.specificity_chance, f"{r.specificity_margin:+.3f}",
             r.specificity["summaries"], r.specificity["restaurants"]]
            for r in results if r.specificity and r.specificity["summaries"]]
    return markdown_table(["variant", "kind", "specific (%)", "chance (%)", "mean margin", "summaries",
                           "restaurants"], rows)


def group_table(results: list[Result]) -> str:
    """ROUGE per cultural group of every variant, best-served group first, and the spread."""
    rows = [[r.variant, g["group"], g["n"], g["rouge1"], g["rouge2"], g["rougeL"]]
            for r in results if r.kind in SCORED for g in r.by_group]
    return markdown_table(["variant", "group", "n", "R-1", "R-2", "R-L"], rows)


def rouge_note(multi_reference: str) -> str:
    """The report header's sentence on how several references combine."""
    how = {"mean": "average an example's F-measures over its references", "max": "take an example's best reference"}
    note = {"mean": ", FewSum's convention", "max": ""}
    return (f"ROUGE: F-measure x100, mean over review groups; R-1, R-2, R-L, R-Lsum {how[multi_reference]} "
            f"(metrics.multi_reference={multi_reference}{note[multi_reference]}); the max columns (rouge*_max in "
            f"report.csv) take the best reference.")


SPECIFICITY_NOTE = ("A summary is specific when its own group's reviews are closer to it (mean ROUGE-1 recall of the "
                    "reviews' content words) than any other group's of the same restaurant; chance is 1 / the "
                    "restaurant's groups. The shared summary per restaurant is the floor (chance by construction).")


def plot(results: list[Result], path: str, new_tokens: int) -> None:
    """ROUGE-L against latency and against size; one point per variant, named in a shared legend
    (variants often coincide, so labels beside the points would overlap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if r.kind in SCORED]
    colors = plt.get_cmap("tab20").colors
    legend_height = 0.3 + 0.2 * math.ceil(len(results) / 2)  # inches below the plots
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5 + legend_height))
    for ax, attr, label in ((axes[0], "latency_s", f"CPU seconds per summary ({new_tokens} tokens, median)"),
                            (axes[1], "size_mb", "size on disk (MB; baselines have no weights)")):
        for i, r in enumerate(results):
            ax.scatter(getattr(r, attr), r.rougeL, marker="o" if r.kind == "model" else "s", s=60, alpha=0.8,
                       color=colors[i % len(colors)], edgecolors="black", linewidths=0.5,
                       label=f"{r.variant} (R-L {r.rougeL:.1f})")
        ax.set_xlabel(label)
        ax.set_ylabel("ROUGE-L")
        ax.grid(alpha=0.3)
    axes[0].set_title("quality vs latency")
    axes[1].set_title("quality vs size")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_height / (4.5 + legend_height), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: list[Result], examples: list[dict], output_dir: str, new_tokens: int) -> dict[str, str]:
    """Every file is written under a temporary name and renamed once complete: a failure leaves none half-written."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, name) for name in
             ("report.csv", "report.md", "milestones.md", "report.png", "examples.jsonl", "contrast.json")}
    with atomic_output(paths["report.csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_row(r) for r in results)
    milestones = milestone_table(results)
    with atomic_output(paths["milestones.md"]) as tmp, open(tmp, "w") as f:
        f.write(milestones)
    sections = ""
    if any(r.by_group for r in results):
        sections += ("\n## ROUGE by cultural group\n\nR-L group spread (above): the best-served group's ROUGE-L minus "
                     f"the worst-served's.\n\n{group_table(results)}")
    if any(r.specificity for r in results):
        sections += (f"\n## Group specificity\n\n{SPECIFICITY_NOTE}\n\n{specificity_table(results)}")
    with atomic_output(paths["report.md"]) as tmp, open(tmp, "w") as f:
        f.write(f"# Evaluation report\n\n{results[0].n_examples} review groups. "
                f"{rouge_note(results[0].multi_reference)} ΔR-L is against the first "
                f"model ({results[0].variant}). Latency: median CPU seconds for {new_tokens} new tokens, "
                f"batch 1.\n\n{report_table(results)}{sections}\n## Milestones\n\n{milestones}")
    with atomic_output(paths["contrast.json"]) as tmp, open(tmp, "w") as f:
        json.dump({r.variant: {"kind": r.kind, "rougeL_group_spread": r.rougeL_group_spread, "by_group": r.by_group,
                               "specificity": r.specificity} for r in results}, f, indent=1)
    with atomic_output(paths["examples.jsonl"]) as tmp, open(tmp, "w") as f:
        for record in examples:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    # a file object: the temporary name has no .png suffix for savefig to read the format from (png is its default)
    with atomic_output(paths["report.png"]) as tmp, open(tmp, "wb") as f:
        plot(results, f, new_tokens)
    return paths


def log_to_loggers(loggers: list, results: list[Result]) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            rows = [_row(r) for r in results]
            logger.log_table(key="evaluate/report", columns=COLUMNS, data=[[row[c] for c in COLUMNS] for row in rows])


def evaluate(cfg: DictConfig) -> dict:
    """The evaluate stage: check the config, score every variant, write the report, log it."""
    from flavorfusion.checks import validate

    validate(cfg)
    results, examples = score_variants(cfg)
    paths = write_report(results, examples, cfg.output_dir, cfg.latency.new_tokens)
    loggers = instantiate_nodes(cfg.logger, "logger")
    log_to_loggers(loggers, results)
    with open(paths["report.md"]) as f:
        print(f.read())
    log.info("report written to %s", cfg.output_dir)
    return {"results": results, "paths": paths, "loggers": loggers}
