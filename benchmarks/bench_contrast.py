"""Cultural contrast (flavorfusion.contrast) on real reviews where the right answer is known, and what it costs.

    python benchmarks/bench_contrast.py                         # both parts; trains the quickstart model first
    python benchmarks/bench_contrast.py --part specificity --model outputs/quickstart/<time>/model
    python benchmarks/bench_contrast.py --part cost --groups 10000

Pseudo-restaurants from FewSum's real Amazon reviews (../shared/data/fewsum_amazon, read in place): each is two or
three products of one category, and each product's eight reviews are one "cultural group", so the group each summary
belongs to is known. Products of one category talk about similar things, as the groups of one restaurant do.

- specificity: `python -m flavorfusion.evaluate` on the pseudo-restaurants (every product of the three splits,
  each product's three human summaries as references), with the model (`--model`, else the quickstart model trained
  here), LexRank and the centroid review as variants, and the two reference points evaluate adds: one LexRank
  summary per restaurant shared by its groups (the floor) and LexRank within each group. Prints each one's share of
  specific summaries beside chance and the mean margin.
- cost: `python -m flavorfusion.summarize` (engine=local, the model on the CPU) on `--groups` pseudo-restaurant
  groups (products reused, reviews resampled), once with `contrast.enabled=false` (the baseline) and once with it:
  what distinctive terms, quotes and specificity add, as seconds and as a share of generation time (target: under
  5% on the CPU).

Writes benchmarks/results/bench_contrast.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEWSUM = ROOT.parent / "shared" / "data" / "fewsum_amazon"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_COST_SHARE = 0.05


def products() -> list[dict]:
    if not FEWSUM.is_dir():
        raise SystemExit(f"{FEWSUM} not found: this benchmark reads FewSum's reviews beside the project")
    found = []
    for split in ("train", "val", "test"):
        with open(FEWSUM / f"{split}.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                found.append({"cat": row["cat"], "product": row["group_id"],
                              "reviews": [row[f"rev{i}"] for i in range(1, 9) if row.get(f"rev{i}")],
                              "summaries": [row[f"summ{i}"] for i in range(1, 4) if row.get(f"summ{i}")]})
    return found


def pseudo_restaurants(items: list[dict], rng: random.Random) -> list[list[dict]]:
    """Products of one category dealt into restaurants of two or three."""
    restaurants = []
    for cat in sorted({p["cat"] for p in items}):
        pool = [p for p in items if p["cat"] == cat]
        rng.shuffle(pool)
        while len(pool) >= 2:
            size = 3 if len(pool) in (3, 5) or (len(pool) > 5 and rng.random() < 0.5) else 2
            restaurants.append(pool[:size])
            pool = pool[size:]
    return restaurants


def write_groups(path: Path, n_groups: int | None, seed: int = 0) -> dict:
    """Review groups (prepare's record, Parquet): every product once, or `n_groups` with products reused and their
    reviews resampled (5-8 of them)."""
    from flavorfusion.data.record import ReviewGroup, to_table
    from flavorfusion.data.writer import open_writer

    rng = random.Random(seed)
    items = products()
    groups = []
    round_ = 0
    while n_groups is None and round_ == 0 or n_groups is not None and len(groups) < n_groups:
        for b, restaurant in enumerate(pseudo_restaurants(items, rng)):
            for label, product in zip(("g1", "g2", "g3"), restaurant, strict=False):
                reviews = product["reviews"] if round_ == 0 else rng.sample(product["reviews"], rng.randint(5, 8))
                groups.append(ReviewGroup(f"r{round_}-{b:03d}-{label}", reviews, product["summaries"],
                                          business_id=f"r{round_}-{b:03d}", name=product["cat"], group=label))
        round_ += 1
    groups = groups if n_groups is None else groups[:n_groups]
    with open_writer(str(path), "parquet") as writer:
        writer.write(to_table(groups))
    return {"groups": len(groups), "restaurants": len({g.business_id for g in groups}), "products": len(items)}


def run(module: str, *overrides: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", module, *overrides], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{module} {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    return done


def train_quickstart(workdir: Path) -> str:
    print("training the quickstart model (python -m flavorfusion.train experiment=quickstart) ...", flush=True)
    run("flavorfusion.train", "experiment=quickstart", f"hydra.run.dir={workdir / 'quickstart'}", "inference=false")
    return str(workdir / "quickstart" / "model")


DATA = ["data=groups", "data.columns.summary=[summary]", "data.k_top_longest=8", "data.max_docs_per_review=8",
        "data.max_source_length=1024"]


def specificity(model: str, workdir: Path) -> dict:
    from flavorfusion.data.record import SCHEMA  # noqa: F401  (the record the groups are written in)

    data = write_groups(workdir / "fewsum_restaurants.parquet", None)
    print(f"specificity: {data['groups']} groups in {data['restaurants']} pseudo-restaurants from "
          f"{data['products']} FewSum products", flush=True)
    out = workdir / "evaluate"
    run("flavorfusion.evaluate", f"model.name_or_path={model}", f"data.path={workdir / 'fewsum_restaurants.parquet'}",
        *DATA, "split=all", "baselines.random_review=null", "latency.runs=1", "zip=false", "generation=quickstart",
        f"output_dir={out}", f"hydra.run.dir={out}")
    report = json.loads((out / "contrast.json").read_text())
    rows = {}
    print(f"{'variant':<40} {'specific':>9} {'chance':>7} {'margin':>8} {'R-L spread':>10}")
    for variant, found in report.items():
        s = found["specificity"]
        rows[variant] = {"kind": found["kind"], "share_specific": s["share_specific"], "chance": s["chance"],
                         "mean_margin": s["mean_margin"], "rougeL_group_spread": found["rougeL_group_spread"],
                         "summaries": s["summaries"], "restaurants": s["restaurants"]}
        spread = found["rougeL_group_spread"]
        print(f"{variant[:40]:<40} {100 * s['share_specific']:>8.1f}% {100 * s['chance']:>6.1f}% "
              f"{s['mean_margin']:>+8.3f} {'' if spread is None else f'{spread:.2f}':>10}")
    return {"data": data, "variants": rows, "model": model}


def cost(model: str, workdir: Path, n_groups: int) -> dict:
    data = write_groups(workdir / "cost_groups.parquet", n_groups, seed=1)
    print(f"cost: {data['groups']} groups in {data['restaurants']} pseudo-restaurants", flush=True)
    from hydra import compose, initialize_config_dir

    from flavorfusion.summarization import summarize

    results, reports = {}, {}
    for name, enabled in (("baseline (contrast.enabled=false)", "false"), ("with contrast", "true")):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("summarize", overrides=[
                f"model.name_or_path={model}", f"data.path={workdir / 'cost_groups.parquet'}", *DATA,
                f"output={workdir / f'cost_{enabled}.parquet'}", f"contrast.enabled={enabled}",
                "generation=quickstart", "progress=false", "device=cpu"])
        started = time.perf_counter()
        reports[name] = summarize(cfg)
        results[name] = {"seconds": time.perf_counter() - started}
    # the stage's own split of the contrast run: generation time and contrast time (terms, quotes, specificity)
    report = reports["with contrast"]
    timing = {key: report.tally["time", key] for key in ("generate_ms", "contrast_ms")}
    share = timing["contrast_ms"] / timing["generate_ms"]
    base, full = results["baseline (contrast.enabled=false)"]["seconds"], results["with contrast"]["seconds"]
    print(f"whole summarize run: {base:.1f} s without contrast, {full:.1f} s with it ({full / base:.3f}x)")
    print(f"in the contrast run: generation {timing['generate_ms'] / 1000:.1f} s, contrast "
          f"{timing['contrast_ms'] / 1000:.2f} s = {100 * share:.2f}% of generation (target < "
          f"{100 * TARGET_COST_SHARE:.0f}%)")
    return {"data": data, "runs": results, "whole_run_ratio": full / base, **timing,
            "contrast_share_of_generation": share, "target_share": TARGET_COST_SHARE,
            "meets_target": share < TARGET_COST_SHARE, "specificity_of_model": {
                k: report.specificity[k] for k in ("share_specific", "chance", "mean_margin", "summaries")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("specificity", "cost", "both"), default="both")
    parser.add_argument("--model", help="an export directory (default: train the quickstart model here)")
    parser.add_argument("--groups", type=int, default=10_000, help="groups summarized by the cost part")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_contrast.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flavorfusion-bench-contrast-") as tmp:
        workdir = Path(tmp)
        model = args.model or train_quickstart(workdir)
        result = {"benchmark": "bench_contrast", "machine": f"{platform.processor() or platform.machine()}",
                  "python": platform.python_version()}
        if args.part in ("specificity", "both"):
            result["specificity"] = specificity(model, workdir)
        if args.part in ("cost", "both"):
            result["cost"] = cost(model, workdir, args.groups)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
