"""prepare engine=beam on Beam's in-process runner vs engine=local, on the same synthetic Google Local pair.

    python benchmarks/bench_prepare_beam.py                        # 1,000,000 reviews, 20,000 businesses
    python benchmarks/bench_prepare_beam.py --reviews 100000 --businesses 2000   # a quick run

Information for the README's Dataflow estimate, not a target. The pair is bench_prepare.py's (seeded,
reused if present). Each contender runs in its own child process (its own peak RSS), interleaved
`--repeat` times; the best run of each counts:
  local          engine=local (the baseline: one process, streaming)
  beam           engine=beam, FnApiRunner in_memory: one worker, every PCollection in memory
  beam_processes engine=beam, FnApiRunner multi_processing with one SDK worker process per core
All run grouping=none without language identification, the cap at 100. Prints reviews/s and the ratios
to the baseline; writes benchmarks/results/bench_prepare_beam.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import ROOT, make_pair, prepare_report, run_header  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CONTENDERS = {
    "local": [],
    "beam": ["engine=beam", "engine.direct_running_mode=in_memory", "engine.direct_num_workers=1"],
    "beam_processes": ["engine=beam", "engine.direct_running_mode=multi_processing",
                       f"engine.direct_num_workers={os.cpu_count() or 1}"],
}


def child(name: str, reviews: str, meta: str, output: str) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    report = prepare_report(reviews, meta, output, language=False, extra=tuple(CONTENDERS[name]))
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # SDK worker processes, if any
    result = {
        "lines": report["inputs"]["reviews"]["lines"],
        "rows": report["written"]["rows"],
        "reviews": report["written"]["reviews"],
        "seconds": seconds,
        "reviews_per_second": report["inputs"]["reviews"]["lines"] / seconds,
        "cpu_seconds": time.process_time() - cpu_started + usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": usage.ru_maxrss / 1024,
        "report": {k: report[k] for k in ("inputs", "written")},
    }
    print("RESULT " + json.dumps(result))


def run_child(name: str, reviews: Path, meta: Path, output: Path) -> dict:
    return child_result(name, [sys.executable, __file__, "--child", name, "--reviews-path", str(reviews),
                               "--meta-path", str(meta), "--output", str(output)])


def child_result(name: str, command: list[str]) -> dict:
    """Run one contender's child process; its `RESULT {json}` line (its own peak RSS, its timings)."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--businesses", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/flavorfusion-bench-prepare"))
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs of each contender; the best counts")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--reviews-path", help=argparse.SUPPRESS)
    parser.add_argument("--meta-path", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.reviews_path, args.meta_path, args.output)
        return

    reviews, meta = make_pair(args.workdir, args.reviews, args.businesses)
    print(f"data: {reviews} ({reviews.stat().st_size / 1e6:.0f} MB), {meta}")
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    for _ in range(args.repeat):
        for name in CONTENDERS:
            output = args.workdir / (f"out_{name}.parquet" if name == "local" else f"out_{name}")
            r = run_child(name, reviews, meta, output)
            runs[name].append(r)
            print(f"{name:15s} {r['seconds']:7.2f} s  {r['reviews_per_second']:9,.0f} reviews/s  "
                  f"CPU {r['cpu_seconds']:7.2f} s  peak {r['peak_rss_mb']:6.0f} MB "
                  f"(+{r['peak_rss_children_mb']:.0f} MB in a worker)  rows {r['rows']:,}")
    results = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    base = results["local"]
    for name, r in results.items():  # the engines must agree, or the speed means nothing
        if r["report"] != base["report"]:
            raise SystemExit(f"{name}'s report differs from engine=local's")
    ratios = {name: base["seconds"] / r["seconds"] for name, r in results.items() if name != "local"}
    for name, ratio in ratios.items():
        r = results[name]
        print(f"{name} vs local (best of {args.repeat}): {ratio:.2f}x the speed "
              f"({r['reviews_per_second']:,.0f} vs {base['reviews_per_second']:,.0f} reviews/s), "
              f"{r['cpu_seconds'] / base['cpu_seconds']:.2f}x the CPU time")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        **run_header("bench_prepare_beam", args),
        "results": {name: {k: v for k, v in r.items() if k != "report"} | {"runs": [
            {k: v for k, v in run.items() if k != "report"} for run in runs[name]]} for name, r in results.items()},
        "speed_ratio_to_local": ratios,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = RESULTS / "bench_prepare_beam.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
