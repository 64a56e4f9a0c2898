"""prepare vs the original code's approach on a synthetic Google Local pair: time and peak memory.

    python benchmarks/bench_prepare.py                      # 1,000,000 reviews, 20,000 businesses
    python benchmarks/bench_prepare.py --reviews 100000 --businesses 2000   # a quick run

Builds the pair once (seeded; reused if present), then runs each contender in its own child process
so that each one's peak RSS (ru_maxrss) is its own:
  baseline  the original code's approach: pandas reads both files whole, merges, filters, drops the
            businesses with N or more reviews, joins each business's reviews with `|||||`, writes CSV
  prepare   `flavorfusion.prepare` doing the same work (grouping=none, no language identification),
            streaming, keeping the N most recent reviews per business instead of dropping it
  prepare+language  `flavorfusion.prepare` as configured by default plus grouping=language: also
            identifies the language of every kept translated review (lingua; run once, for information)
The contenders run interleaved `--repeat` times (default 3) and the best run of each counts, since
other processes on a shared machine slow runs down at random. Prints the ratios and writes
benchmarks/results/bench_prepare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CAP = 100
MIN_CHARS, MAX_CHARS = 20, 5000

VOCABULARY = (
    "the food was great good bad service slow fast friendly staff tacos pizza noodles rice curry spicy "
    "fresh cold warm price cheap expensive place clean dirty table wait long short menu dessert drinks "
    "coffee tea burger fries salad soup bread sauce chicken beef pork fish shrimp vegan portion huge tiny "
    "recommend again never always love hate okay amazing awful decent parking music loud quiet"
)
SPANISH_VOCABULARY = "la comida estaba muy rica y el servicio excelente volveremos pronto con la familia"
RESTAURANT_CATEGORIES = ["Mexican restaurant", "Pizza restaurant", "Chinese restaurant", "Italian restaurant"]
OTHER_CATEGORIES = ["Gift shop", "Gas station", "Dentist", "Park"]


def make_pair(
    workdir: Path, n_reviews: int, n_businesses: int, seed: int = 0, extras: bool = True
) -> tuple[Path, Path]:
    """A pair with Google Local's schema and field order: ~60% of businesses restaurants, skewed
    popularity (many restaurants over the cap), 4% null text, 1% exact duplicates, 5% '(Translated by
    Google)' reviews, 20% with photos (1-6 URLs, as in the schema sample) and 10% with an owner's
    response (`extras=False`: `pics` and `resp` always null, the easiest case for pandas)."""
    reviews_path = workdir / f"reviews_{n_reviews}_v2{'' if extras else '_plain'}.json"
    meta_path = workdir / f"meta_{n_businesses}_v2.json"
    if reviews_path.exists() and meta_path.exists():
        return reviews_path, meta_path
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words, spanish = VOCABULARY.split(), SPANISH_VOCABULARY.split()
    ids = [f"0x{rng.getrandbits(60):015x}:0x{rng.getrandbits(60):015x}" for _ in range(n_businesses)]
    with open(meta_path, "w") as f:
        for i, gmap_id in enumerate(ids):
            restaurant = rng.random() < 0.6
            category = [rng.choice(RESTAURANT_CATEGORIES if restaurant else OTHER_CATEGORIES), "Bar"]
            record = {
                "name": f"Business {i}",
                "address": f"Business {i}, {i} Main St, Springfield, ST 00000",
                "gmap_id": gmap_id,
                "description": None,
                "latitude": 40.0,
                "longitude": -75.0,
                "category": category,
                "avg_rating": 4.2,
                "num_of_reviews": 10,
                "price": "$$",
                "hours": None,
                "MISC": None,
                "state": "Open",
                "relative_results": ids[:3],
                "url": "https://www.google.com/maps/place//data=!4m2!3m1!1s" + gmap_id,
            }
            f.write(json.dumps(record) + "\n")
    # a pool of texts keeps generation fast; the review number makes most of them distinct
    pool = [" ".join(rng.choices(words, k=rng.randint(8, 90))) for _ in range(5000)]
    weights = [1.0 / (rank + 10) for rank in range(n_businesses)]  # Zipf-like popularity
    owners = rng.choices(ids, weights=weights, k=n_reviews)
    previous = None
    with open(reviews_path, "w") as f:
        for i, gmap_id in enumerate(owners):
            roll = rng.random()
            if previous is not None and roll < 0.01:
                f.write(previous)
                continue
            if roll < 0.05:
                text = None
            elif roll < 0.10:
                english = rng.choice(pool)
                original = " ".join(rng.choices(spanish, k=rng.randint(6, 30)))
                text = f"(Translated by Google) {english} #{i}\n\n(Original)\n{original} #{i}"
            else:
                text = f"{rng.choice(pool)} #{i}"
            when = 1500000000000 + rng.getrandbits(35)
            pics = None
            if extras and rng.random() < 0.2:
                pics = [
                    {
                        "url": [
                            f"https://lh5.googleusercontent.com/p/AF1Qip{rng.getrandbits(200):050x}=w150-h150-k-no-p"
                        ]
                    }
                    for _ in range(rng.randint(1, 6))
                ]
            resp = None
            if extras and rng.random() < 0.1:
                resp = {
                    "time": when + rng.getrandbits(30),
                    "text": "Thank you for your review, we hope to see you again soon!",
                }
            record = {
                "user_id": str(100000000000000000000 + rng.getrandbits(40)),
                "name": "Reviewer Name",
                "time": when,
                "rating": rng.randint(1, 5),
                "text": text,
                "pics": pics,
                "resp": resp,
                "gmap_id": gmap_id,
            }
            previous = json.dumps(record) + "\n"
            f.write(previous)
    return reviews_path, meta_path


def run_header(benchmark: str, args: argparse.Namespace) -> dict:
    """The head of a results file: what ran, on what input and machine."""
    return {
        "benchmark": benchmark,
        "reviews": args.reviews,
        "businesses": args.businesses,
        "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


# -- contenders, each run in a child process ---------------------------------------------------------
def run_baseline(reviews: str, meta: str, output: str) -> dict:
    """The original code's approach, reconstructed: everything in pandas at once."""
    import pandas as pd

    categories = set(_categories())
    review_df = pd.read_json(reviews, lines=True)
    meta_df = pd.read_json(meta, lines=True)
    is_restaurant = meta_df["category"].map(lambda c: isinstance(c, list) and any(x in categories for x in c))
    meta_df = meta_df[is_restaurant].drop_duplicates("gmap_id")
    df = review_df.merge(meta_df[["gmap_id", "name", "address"]], on="gmap_id", how="inner")
    df = df[df["text"].notna()]
    length = df["text"].str.len()
    df = df[(length >= MIN_CHARS) & (length < MAX_CHARS)]
    df = df.drop_duplicates(["user_id", "gmap_id", "text"])
    # the original dropped every business with N or more reviews
    size = df.groupby("gmap_id")["text"].transform("size")
    df = df[size < CAP]
    groups = df.groupby("gmap_id")["text"].apply("|||||".join).reset_index()
    groups.columns = ["id", "review_str"]
    groups["summary"] = ""
    groups[["id", "summary", "review_str"]].to_csv(output, index=False)
    return {"rows": len(groups), "reviews": int(len(df))}


def _categories() -> list[str]:
    from omegaconf import OmegaConf

    return list(OmegaConf.load(ROOT / "conf" / "source" / "google_local.yaml").categories)


def prepare_report(reviews: str, meta: str, output: str, language: bool, extra: tuple[str, ...] = ()) -> dict:
    """`flavorfusion.prepare` doing the baseline's work (the same cap and length bounds); its report."""
    from hydra import compose, initialize_config_dir

    from flavorfusion.preparation import prepare

    overrides = [
        f"source.reviews={reviews}",
        f"source.meta={meta}",
        f"output={output}",
        f"source.max_reviews_per_business={CAP}",
        f"source.min_chars={MIN_CHARS}",
        f"source.max_chars={MAX_CHARS}",
        "progress=false",
        *extra,
    ]
    overrides += ["grouping=language"] if language else ["grouping=none", "source.language_id=null"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=overrides)
    return prepare(cfg)


def run_prepare(reviews: str, meta: str, output: str, language: bool) -> dict:
    report = prepare_report(reviews, meta, output, language)
    return {"rows": report["written"]["rows"], "reviews": report["written"]["reviews"]}


def child(args: argparse.Namespace) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    if args.child == "baseline":
        result = run_baseline(args.reviews_path, args.meta_path, args.output)
    else:
        result = run_prepare(
            args.reviews_path, args.meta_path, args.output, language=args.child == "prepare+language"
        )
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu_started  # less sensitive to other load on the machine
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("RESULT " + json.dumps(result))


def run_child(name: str, reviews: Path, meta: str, output: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--reviews-path",
        str(reviews),
        "--meta-path",
        str(meta),
    ]
    command += ["--output", str(output)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["process_seconds"] = wall  # with interpreter start and imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--businesses", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/flavorfusion-bench-prepare"))
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved runs of each contender; the best counts"
    )
    parser.add_argument("--skip-language", action="store_true", help="skip the prepare+language run")
    parser.add_argument(
        "--plain", action="store_true", help="reviews without photos or owner responses (pics, resp null)"
    )
    parser.add_argument(
        "--child", choices=["baseline", "prepare", "prepare+language"], help=argparse.SUPPRESS
    )
    parser.add_argument("--reviews-path", help=argparse.SUPPRESS)
    parser.add_argument("--meta-path", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    started = time.perf_counter()
    reviews, meta = make_pair(args.workdir, args.reviews, args.businesses, extras=not args.plain)
    print(
        f"data: {reviews} ({reviews.stat().st_size / 1e6:.0f} MB), {meta} ({time.perf_counter() - started:.1f}s)"
    )
    contenders = ["baseline", "prepare"] + ([] if args.skip_language else ["prepare+language"])
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    # interleaved repeats: load from other processes on a shared machine hits every contender alike
    for repeat in range(args.repeat):
        for name in contenders:
            if name == "prepare+language" and repeat > 0:
                continue  # informational; once is enough
            suffix = "csv" if name == "baseline" else "parquet"
            output = args.workdir / f"out_{name.replace('+', '_')}.{suffix}"
            r = run_child(name, reviews, str(meta), output)
            runs[name].append(r)
            print(
                f"{name:17s} {r['seconds']:7.2f} s work ({r['cpu_seconds']:6.2f} s CPU)  "
                f"{r['process_seconds']:7.2f} s process  peak {r['peak_rss_mb']:7.0f} MB  "
                f"rows {r['rows']:,}  reviews {r['reviews']:,}"
            )
    # best of the repeats: the run least disturbed by anything else on the machine
    results = {name: min(rs, key=lambda r: r["seconds"]) | {"runs": rs} for name, rs in runs.items()}
    base, ours = results["baseline"], results["prepare"]
    ratios = {
        "speedup_work": base["seconds"] / ours["seconds"],
        "speedup_cpu": base["cpu_seconds"] / ours["cpu_seconds"],
        "speedup_process": base["process_seconds"] / ours["process_seconds"],
        "peak_memory_ratio": ours["peak_rss_mb"] / base["peak_rss_mb"],
    }
    print(
        f"prepare vs baseline (best of {args.repeat}): {ratios['speedup_work']:.2f}x faster (work), "
        f"{ratios['speedup_cpu']:.2f}x (CPU), {ratios['speedup_process']:.2f}x (whole process); peak memory "
        f"{ours['peak_rss_mb']:.0f} MB vs {base['peak_rss_mb']:.0f} MB = {ratios['peak_memory_ratio']:.2f}x "
        "(targets: >= 3x faster, < 0.5x memory)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        **run_header("bench_prepare", args),
        "plain": args.plain,
        "results": results,
        "ratios": ratios,
        "targets": {"speedup": 3.0, "peak_memory_ratio": 0.5},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = RESULTS / f"bench_prepare{'_plain' if args.plain else ''}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
