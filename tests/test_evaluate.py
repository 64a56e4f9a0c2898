"""`python -m flavorfusion.evaluate`: baselines, and one report over exports, quantized exports and baselines."""

import csv
import json
import re

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from flavorfusion.baselines import CentroidReview, LexRank, RandomReview, lexrank_scores
from flavorfusion.errors import ConfigError

from .conftest import CONF, FAST, ROOT, compose_train

REVIEWS = [
    "The tacos were great and the salsa was fresh. Service was slow.",
    "Great tacos, fresh salsa. The room is noisy.",
    "Parking is hard to find downtown.",
]
QUICKSTART_DATA = ["data.path=${ff.resource:quickstart_reviews.jsonl}", "data.columns.reviews=reviews",
                   "data.columns.summary=summary", "data.k_top_longest=8", "data.max_docs_per_review=4",
                   "data.max_source_length=512", "data.max_target_length=64", "data.subset=10"]


def compose_evaluate(overrides: list[str], tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


FAST_EVAL = [*QUICKSTART_DATA, "split=all", "latency.runs=1", "latency.new_tokens=4", "generation.max_new_tokens=6",
             "generation.min_new_tokens=2", "zip=false"]


def test_random_review_is_seeded_per_group():
    assert RandomReview(seed=1).summarize(REVIEWS, "g1") == RandomReview(seed=1).summarize(REVIEWS, "g1")
    assert RandomReview().summarize(REVIEWS, "g1") in REVIEWS


def test_centroid_review_picks_the_most_typical_review():
    assert CentroidReview().summarize(REVIEWS) in REVIEWS[:2]
    assert CentroidReview().summarize(["only one"]) == "only one"


def test_lexrank_picks_central_sentences():
    scores = lexrank_scores(np.array([[1, 0.9, 0.0], [0.9, 1, 0.2], [0.0, 0.2, 1]]), threshold=None)
    assert scores.sum() == pytest.approx(1.0) and scores.argmax() == 1
    summary = LexRank(max_sentences=1).summarize(REVIEWS)
    assert "tacos" in summary.lower() and "Parking" not in summary


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from flavorfusion.train import train

    run_dir = tmp_path_factory.mktemp("run")
    result = train(compose_train([*FAST, "quantize=int8_dynamic"], run_dir))
    return result.export_dir, result.objects["quantized_export_dir"]


def test_train_writes_the_quantized_export_beside_the_fp_one(exports):
    from flavorfusion.compression.quantization import Int8DynamicLinear, is_quantized_export, load_quantized

    fp_dir, int8_dir = exports
    assert int8_dir.endswith("model_int8_dynamic") and is_quantized_export(int8_dir) and not is_quantized_export(fp_dir)
    model, _ = load_quantized(int8_dir)
    assert isinstance(model.led.encoder.layers[0].fc1, Int8DynamicLinear)
    # the project's loader (train, evaluate, later stages) recognizes a quantized export too
    from flavorfusion.models.loading import load_pretrained

    loaded, _ = load_pretrained(int8_dir)
    assert isinstance(loaded.led.encoder.layers[0].fc1, Int8DynamicLinear)


def test_report_over_exports_and_baselines(exports, tmp_path):
    from flavorfusion.evaluation import evaluate as run

    fp_dir, int8_dir = exports
    out = run(compose_evaluate([f"model.name_or_path={fp_dir}", f"models=[{int8_dir}]", *FAST_EVAL], tmp_path))
    with open(out["paths"]["report.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["kind"] for r in rows] == ["model", "model", "baseline", "baseline", "baseline"]
    assert [r["variant"] for r in rows][2:] == ["random_review", "centroid_review", "lexrank"]
    assert float(rows[1]["size_mb"]) < float(rows[0]["size_mb"]) and rows[1]["d_rougeL"] != ""
    assert all(float(r["latency_s"]) > 0 for r in rows)
    with open(out["paths"]["examples.jsonl"]) as f:
        examples = [json.loads(line) for line in f]
    n_groups = int(rows[0]["n_examples"])
    assert len(examples) == 5 * n_groups
    assert {"id", "prediction", "references", "rouge1", "rougeLsum"} <= set(examples[0])
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert "| model | zipped size (MB) | ROUGE-1 | ROUGE-2 | ROUGE-L | inference time (s) |" in (
        tmp_path / "milestones.md").read_text()


def test_a_baseline_alone_needs_no_model(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    out = run(compose_evaluate(["model=lexrank", "baselines.random_review=null", *FAST_EVAL], tmp_path))
    assert [r.variant for r in out["results"]] == ["lexrank", "centroid_review"]  # lexrank once


def test_wandb_logger_gets_the_report_table(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    out = run(compose_evaluate(["model=lexrank", "baselines.random_review=null", "baselines.lexrank=null",
                                "logger=wandb", *FAST_EVAL], tmp_path))
    run_ = out["loggers"][0].experiment
    try:
        assert "evaluate/report" in list(run_.summary.keys())
    finally:
        run_.finish()


def test_export_directory_without_weights_names_the_key(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"models\[0\]=.*holds no model weights"):
        run(compose_evaluate(["model=lexrank", f"models=[{empty}]", *FAST_EVAL], tmp_path))


def test_baselines_cannot_be_trained():
    from flavorfusion.checks import validate_train

    with pytest.raises(ConfigError, match="model=flavorfusion.baselines.LexRank is an extractive baseline"):
        validate_train(compose_train(["experiment=quickstart", "model=lexrank"]))


# ---- ROUGE with several references: averaged (FewSum's convention) and best ------------------------------

TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
FEWSUM_COLUMNS = ["cat", "group_id", *(f"rev{i}" for i in range(1, 9)), *(f"summ{i}" for i in range(1, 4))]
FEWSUM_AMAZON = ROOT.parent / "shared" / "data" / "fewsum_amazon"  # machine-dependent: the real FewSum split
FAST_FEWSUM = ["data=fewsum", "model=lexrank", "split=all", "latency.runs=1", "zip=false"]


def write_fewsum_sample(path, n_groups: int = 12) -> None:
    """A FewSum-style TSV (8 reviews, 3 references) made from the shipped synthetic quickstart groups: the
    references are the group's summary, its sentences in reverse order, and the longest review's first two
    sentences, so they differ and mean and max disagree."""
    from flavorfusion.resources import resource_path

    with open(resource_path("quickstart_reviews.jsonl")) as f:
        groups = [g for g in map(json.loads, f) if len(g["reviews"]) >= 8][:n_groups]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(FEWSUM_COLUMNS)
        for g in groups:
            reviews = g["reviews"][:8]
            sentences = _sentences(g["summary"])
            longest = _sentences(max(reviews, key=len))
            writer.writerow(["restaurant", g["id"], *reviews, g["summary"], " ".join(reversed(sentences)),
                             " ".join(longest[:2])])


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def independent_rouge(examples: list[dict], variant: str) -> tuple[dict, dict]:
    """Corpus ROUGE straight from rouge_score: per example the F-measure against each reference, averaged
    (and the best), x100, then the mean over examples. rougeLsum gets one sentence per line."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(TYPES), use_stemmer=True)
    mean, best = {t: [] for t in TYPES}, {t: [] for t in TYPES}
    for e in (e for e in examples if e["variant"] == variant):
        prediction = "\n".join(_sentences(e["prediction"]))
        per_reference = [scorer.score("\n".join(_sentences(r)), prediction) for r in e["references"]]
        for t in TYPES:
            fs = [100 * s[t].fmeasure for s in per_reference]
            mean[t].append(sum(fs) / len(fs))
            best[t].append(max(fs))
    return {t: float(np.mean(v)) for t, v in mean.items()}, {t: float(np.mean(v)) for t, v in best.items()}


def check_report_against_rouge_score(out, n_references: int) -> dict[str, tuple[dict, dict]]:
    """report.csv's rouge* and rouge*_max against `independent_rouge` over examples.jsonl; returns both."""
    with open(out["paths"]["report.csv"]) as f:
        rows = list(csv.DictReader(f))
    with open(out["paths"]["examples.jsonl"]) as f:
        examples = [json.loads(line) for line in f]
    assert {"references", *TYPES, *(f"{t}_max" for t in TYPES)} <= set(examples[0])
    assert all(len(e["references"]) == n_references for e in examples)
    figures = {}
    for row in rows:
        assert row["multi_reference"] == "mean"
        mean, best = independent_rouge(examples, row["variant"])
        for t in TYPES:
            assert float(row[t]) == pytest.approx(mean[t], abs=1e-6)
            assert float(row[f"{t}_max"]) == pytest.approx(best[t], abs=1e-6)
            assert float(row[f"{t}_max"]) >= float(row[t])
        figures[row["variant"]] = (mean, best)
    with open(out["paths"]["report.md"]) as f:
        report = f.read()
    assert "metrics.multi_reference=mean" in report and "| R-1 max |" in report
    return figures


def print_figures(title: str, figures: dict) -> None:
    print(f"\n{title}: ROUGE mean over references / best reference (max - mean)")
    for variant, (mean, best) in figures.items():
        print(f"  {variant:16s} " + "  ".join(f"{t} {mean[t]:.2f}/{best[t]:.2f} (+{best[t] - mean[t]:.2f})"
                                             for t in TYPES[:3]))


def test_fewsum_style_sample_reports_rouge_averaged_over_references(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    sample = tmp_path / "fewsum_sample.tsv"
    write_fewsum_sample(sample)
    out = run(compose_evaluate([*FAST_FEWSUM, f"data.path={sample}"], tmp_path / "report"))
    figures = check_report_against_rouge_score(out, n_references=3)
    print_figures("synthetic FewSum-style sample", figures)
    assert any(best["rouge1"] > mean["rouge1"] + 1 for mean, best in figures.values())


@pytest.mark.skipif(not (FEWSUM_AMAZON / "test.csv").is_file(),
                    reason=f"the FewSum Amazon split is not on this machine ({FEWSUM_AMAZON}/test.csv)")
def test_fewsum_amazon_test_split_reports_rouge_averaged_over_references(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    # FewSum's files are tab-separated despite the .csv suffix
    out = run(compose_evaluate([*FAST_FEWSUM, f"data.path={FEWSUM_AMAZON / 'test.csv'}", "data.format=tsv"],
                               tmp_path))
    figures = check_report_against_rouge_score(out, n_references=3)
    print_figures(f"FewSum Amazon test ({out['results'][0].n_examples} products)", figures)
    assert all(best["rouge1"] > mean["rouge1"] for mean, best in figures.values())


def test_max_aggregation_makes_the_main_columns_the_best_reference(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    sample = tmp_path / "fewsum_sample.tsv"
    write_fewsum_sample(sample, n_groups=4)
    out = run(compose_evaluate([*FAST_FEWSUM, f"data.path={sample}", "metrics.multi_reference=max",
                                "baselines.random_review=null", "baselines.centroid_review=null"], tmp_path / "r"))
    (result,) = out["results"]
    assert result.multi_reference == "max" and result.rouge1 == result.rouge1_max
    assert "metrics.multi_reference=max" in (tmp_path / "r" / "report.md").read_text()


def test_bad_multi_reference_fails_before_loading_anything(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    with pytest.raises(ConfigError, match=r"^metrics\.multi_reference=median must be one of mean, max$"):
        run(compose_evaluate([*FAST_FEWSUM, "data.path=/nonexistent.tsv", "metrics.multi_reference=median"],
                             tmp_path))


def test_write_report_leaves_no_partial_file(tmp_path):
    from flavorfusion.evaluation import Result, write_report

    results = [Result("lexrank", "baseline", rouge1=10.0, rouge1_max=12.0, n_examples=1, latency_s=0.1)]
    with pytest.raises(TypeError):  # not JSON: fails while examples.jsonl is being written
        write_report(results, [{"id": "g1"}, {"id": object()}], str(tmp_path), new_tokens=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contrast.json", "milestones.md", "report.csv", "report.md"]
    with open(tmp_path / "report.csv") as f:
        assert next(csv.DictReader(f))["rouge1_max"] == "12.0"


def test_specificity_per_variant_with_its_floor_and_ceiling_and_rouge_by_group(tmp_path):
    """Restaurants whose groups dwell on different themes: LexRank within each group is specific far above chance,
    one LexRank summary shared by a restaurant's groups is at chance or below, and ROUGE is broken down by group."""
    from flavorfusion.evaluation import evaluate as run

    from .contrast_data import write_restaurants

    rows = write_restaurants(tmp_path / "groups.parquet", 30)
    data = ["data=groups", f"data.path={tmp_path / 'groups.parquet'}", "data.columns.summary=summary", "split=all",
            "latency.runs=1", "zip=false"]
    out = run(compose_evaluate(["model=lexrank", "baselines.random_review=null", *data], tmp_path / "out"))
    results = {r.variant: r for r in out["results"]}
    floor, within = results["shared LexRank per restaurant (floor)"], results["LexRank within each group"]
    assert within.specific_share >= within.specificity_chance + 0.4
    assert floor.specific_share <= floor.specificity_chance + 1e-9
    assert results["lexrank"].specificity == within.specificity  # the lexrank variant is the within-group baseline
    assert results["centroid_review"].specific_share > results["centroid_review"].specificity_chance

    by_group = results["lexrank"].by_group
    assert {g["group"] for g in by_group} <= {"en", "es", "zh", "ko"} and sum(g["n"] for g in by_group) == len(rows)
    assert results["lexrank"].rougeL_group_spread == pytest.approx(by_group[0]["rougeL"] - by_group[-1]["rougeL"])
    with open(tmp_path / "out" / "report.csv", newline="") as f:
        report = {row["variant"]: row for row in csv.DictReader(f)}
    assert float(report["lexrank"]["specific_share"]) == within.specific_share
    assert report["shared LexRank per restaurant (floor)"]["kind"] == "reference point"
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## ROUGE by cultural group" in text and "## Group specificity" in text
    assert "| shared LexRank per restaurant (floor) | reference point |" in text
    saved = json.loads((tmp_path / "out" / "contrast.json").read_text())
    assert saved["lexrank"]["specificity"]["restaurants"] == 30
