"""summarize engine=beam (RunInference on Beam's in-process runner) vs engine=local, same groups, same model.

    python benchmarks/bench_summarize_beam.py                  # 480 groups built from FewSum's real reviews
    python benchmarks/bench_summarize_beam.py --groups 96      # a quick run

Information (for the README's Dataflow estimate), not a target. The groups are built from the real Amazon reviews
of ../shared/data/fewsum_amazon (4-8 reviews of one product each, seeded) and written as prepare writes them;
without that folder, from the shipped sample. The model is bench_serve.py's `small` LED shape (d_model 256, 2+2
layers, window 128, 4096 positions; random weights: speed only), greedy, exactly --new-tokens tokens. Each
contender runs in its own child process (its own peak RSS), interleaved `--repeat` times; the best run counts:
  local           engine=local (the baseline): longest first, batch_size groups per generate call
  beam            engine=beam, FnApiRunner in_memory: one worker, RunInference batches by length bucket
  beam_processes  engine=beam, FnApiRunner multi_processing, one SDK worker process (and model) per core
Prints groups/s (model loading included: it is part of a job), the ratios to the baseline, the peak RSS of the
job's process and of its largest child process (SDK workers; for local, a helper subprocess), and whether the rows
equal the baseline's; writes
benchmarks/results/bench_summarize_beam.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the same engine settings as prepare's benchmark, and its way of running a contender in a child process
from bench_prepare_beam import CONTENDERS, RESULTS, ROOT, child_result  # noqa: E402

FEWSUM = ROOT.parent / "shared" / "data" / "fewsum_amazon"


def review_pool() -> tuple[list[list[str]], str]:
    """Reviews per product: FewSum's when the shared data is beside the project, else the shipped sample."""
    if FEWSUM.is_dir():
        products = []
        for split in ("train", "val", "test"):
            with open(FEWSUM / f"{split}.csv", encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    products.append([row[f"rev{i}"] for i in range(1, 9) if row.get(f"rev{i}")])
        return products, "fewsum_amazon"
    from flavorfusion.resources import resource_path

    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["reviews"] for line in f if line.strip()], "quickstart sample"


def write_inputs(directory: Path, n_groups: int) -> tuple[str, str, str]:
    from flavorfusion.data.record import ReviewGroup, to_table
    from flavorfusion.data.writer import open_writer
    from flavorfusion.models.loading import save_pretrained
    from flavorfusion.models.tiny import build_tiny_led, train_tokenizer
    from flavorfusion.resources import resource_path

    products, origin = review_pool()
    rng = random.Random(0)
    groups = []
    for i in range(n_groups):
        reviews = products[i % len(products)]
        picked = rng.sample(reviews, rng.randint(min(4, len(reviews)), len(reviews)))
        groups.append(ReviewGroup(f"g{i:05d}", picked, business_id=f"b{i % len(products)}", group=f"c{i % 3}"))
    path = directory / "groups.parquet"
    with open_writer(str(path), "parquet") as writer:
        writer.write(to_table(groups))
    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=1000)
    model = build_tiny_led(tokenizer, d_model=256, layers=2, heads=4, ffn_dim=1024, attention_window=128,
                           max_source_positions=4096, max_target_positions=1024)
    export = save_pretrained(model, tokenizer, str(directory / "model"))
    return str(path), export, origin


def child(name: str, groups: str, export: str, output: str, new_tokens: int, batch_size: int) -> None:
    from hydra import compose, initialize_config_dir

    from flavorfusion.summarization import summarize

    overrides = [f"model.name_or_path={export}", f"data.path={groups}", f"output={output}", "progress=false",
                 f"generation.max_new_tokens={new_tokens}", f"generation.min_new_tokens={new_tokens}",
                 f"batch_size={batch_size}", *CONTENDERS[name]]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("summarize", overrides=overrides)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = summarize(cfg)
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # SDK worker processes, if any
    print("RESULT " + json.dumps({
        "groups": report.total, "generated": report.generated, "failed": report.failed, "seconds": seconds,
        "groups_per_second": report.generated / seconds,
        "cpu_seconds": time.process_time() - cpu_started + children.ru_utime + children.ru_stime,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": children.ru_maxrss / 1024,
    }))


def run_child(name: str, groups: str, export: str, output: Path, args) -> dict:
    return child_result(name, [sys.executable, __file__, "--child", name, "--groups-path", groups, "--export", export,
                               "--output", str(output), "--new-tokens", str(args.new_tokens),
                               "--batch-size", str(args.batch_size)])


def same_rows(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    def rows(path):
        return sorted(pq.read_table(path, columns=["id", "summary"]).to_pylist(), key=lambda r: r["id"])

    return rows(a) == rows(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=480)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "bench_summarize_beam.json"))
    parser.add_argument("--child")
    parser.add_argument("--groups-path")
    parser.add_argument("--export")
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.groups_path, args.export, args.output, args.new_tokens, args.batch_size)

    with tempfile.TemporaryDirectory(prefix="bench-summarize-beam-") as tmp:
        directory = Path(tmp)
        groups, export, origin = write_inputs(directory, args.groups)
        print(f"{args.groups} groups from {origin}, {args.new_tokens} new tokens, batch_size {args.batch_size}, "
              f"{os.cpu_count()} cores")
        runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
        for attempt in range(args.repeat):
            for name in CONTENDERS:  # interleaved: load on the machine hits every contender alike
                output = directory / f"{name}-{attempt}" / ("out.parquet" if name == "local" else "out")
                output.parent.mkdir()
                result = run_child(name, groups, export, output, args)
                result["output"] = str(output)
                runs[name].append(result)
                print(f"  {name:15s} {result['groups_per_second']:7.2f} groups/s  {result['seconds']:7.1f} s  "
                      f"peak {result['peak_rss_mb']:6.0f} MB (+{result['peak_rss_children_mb']:.0f} MB in a worker)")
        best = {name: max(results, key=lambda r: r["groups_per_second"]) for name, results in runs.items()}
        baseline = best["local"]
        identical = {name: same_rows(Path(baseline["output"]), Path(r["output"])) for name, r in best.items()}
    print(f"{'contender':15s} {'groups/s':>9s} {'x local':>8s} {'peak MB':>8s} {'worker MB':>10s} {'same rows':>10s}")
    for name, r in best.items():
        print(f"{name:15s} {r['groups_per_second']:9.2f} {r['groups_per_second'] / baseline['groups_per_second']:8.2f} "
              f"{r['peak_rss_mb']:8.0f} {r['peak_rss_children_mb']:10.0f} {str(identical[name]):>10s}")
    out = {
        "groups": args.groups, "origin": origin, "new_tokens": args.new_tokens, "batch_size": args.batch_size,
        "cores": os.cpu_count(), "load_average": os.getloadavg(),
        "best": {name: {k: v for k, v in r.items() if k != "output"} for name, r in best.items()},
        "ratio_to_local": {name: r["groups_per_second"] / baseline["groups_per_second"] for name, r in best.items()},
        "same_rows_as_local": identical, "runs": {n: [{k: v for k, v in r.items() if k != "output"} for r in rs]
                                                  for n, rs in runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
