"""`python -m flavorfusion.evaluate`: baselines, and one report over exports, quantized exports and baselines."""

import csv
import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from flavorfusion.baselines import CentroidReview, LexRank, RandomReview, lexrank_scores
from flavorfusion.errors import ConfigError

from .conftest import CONF, FAST, compose_train

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
    from flavorfusion.evaluate import run

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
    from flavorfusion.evaluate import run

    out = run(compose_evaluate(["model=lexrank", "baselines.random_review=null", *FAST_EVAL], tmp_path))
    assert [r.variant for r in out["results"]] == ["lexrank", "centroid_review"]  # lexrank once


def test_wandb_logger_gets_the_report_table(tmp_path):
    from flavorfusion.evaluate import run

    out = run(compose_evaluate(["model=lexrank", "baselines.random_review=null", "baselines.lexrank=null",
                                "logger=wandb", *FAST_EVAL], tmp_path))
    run_ = out["loggers"][0].experiment
    try:
        assert "evaluate/report" in list(run_.summary.keys())
    finally:
        run_.finish()


def test_export_directory_without_weights_names_the_key(tmp_path):
    from flavorfusion.evaluate import run

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"models\[0\]=.*holds no model weights"):
        run(compose_evaluate(["model=lexrank", f"models=[{empty}]", *FAST_EVAL], tmp_path))


def test_baselines_cannot_be_trained():
    from flavorfusion.config import validate_train

    with pytest.raises(ConfigError, match="model=flavorfusion.baselines.LexRank is an extractive baseline"):
        validate_train(compose_train(["experiment=quickstart", "model=lexrank"]))
