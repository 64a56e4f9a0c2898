"""A summary depends on its own group alone: the same token ids whether a group is generated alone or among any
batch-mates (any batch size, any padding), for an fp32 export and for the int8 export (per-token activation scales,
`models/quantized.Int8DynamicLinear`)."""

from __future__ import annotations

import json
import random

import pytest
from omegaconf import OmegaConf

from flavorfusion.config.generation import GenerationConf
from flavorfusion.config.model import ModelSource
from flavorfusion.data.record import ReviewGroup
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.runtime import InferenceRuntime, Placement
from flavorfusion.models.tiny import build_tiny_led, widen_weights
from flavorfusion.resources import resource_path

DATA = {"k_top_longest": 24, "max_docs_per_review": 24, "max_source_length": 512, "max_target_length": 64,
        "seed": 42, "pad_to_multiple_of": None}
GENERATION = GenerationConf(max_new_tokens=12, min_new_tokens=4)
N_GROUPS = 64


def widened_export(tokenizer, directory) -> str:
    """The quickstart's tiny LED shape with weights drawn wide (std 0.5): a random init at std 0.02 decodes one
    string for every input, which would make "the same summaries" hold trivially."""
    return save_pretrained(widen_weights(build_tiny_led(tokenizer)), tokenizer, str(directory / "fp32"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer) -> dict[str, str]:
    from flavorfusion.compression.quantization import export_quantized

    directory = tmp_path_factory.mktemp("exports")
    fp32 = widened_export(tokenizer, directory)
    int8 = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                              "export_dir": str(directory / "int8")}), fp32)
    return {"fp32": fp32, "int8": int8}


@pytest.fixture(scope="module")
def groups() -> list[ReviewGroup]:
    """64 groups of 1-24 reviews each: encoded lengths from a few dozen tokens to the 512 limit."""
    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        texts = [t for line in f if line.strip() for t in json.loads(line)["reviews"]]
    rng = random.Random(7)
    return [ReviewGroup(f"g{i}", rng.sample(texts, rng.randint(1, 24))) for i in range(N_GROUPS)]


def runtime(export: str) -> InferenceRuntime:
    return InferenceRuntime(ModelSource.parse(export, "export"), GENERATION, DATA, Placement("cpu")).load()


def batched_ids(model: InferenceRuntime, features: list[dict], sizes: list[int], seed: int) -> dict[int, list[int]]:
    """Every group's ids when the groups are shuffled and cut into batches of the given sizes (cycled)."""
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    found, start, i = {}, 0, 0
    while start < len(order):
        batch = order[start:start + sizes[i % len(sizes)]]
        for index, ids in zip(batch, model.generate_ids([features[j] for j in batch]), strict=True):
            found[index] = ids
        start, i = start + len(batch), i + 1
    return found


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_a_summary_is_the_same_alone_and_among_any_batch_mates(exports, groups, kind):
    model = runtime(exports[kind])
    features = model.encode(groups)
    lengths = sorted(len(f["input_ids"]) for f in features)
    assert lengths[0] < 100 and lengths[-1] > 300  # varied lengths: batch-mates pad each other
    alone = [model.generate_ids([f])[0] for f in features]
    assert len({tuple(ids) for ids in alone}) >= N_GROUPS * 3 // 4  # the groups get distinct summaries
    for seed, sizes in ((0, [4]), (1, [16]), (2, [16, 4, 4])):
        together = batched_ids(model, features, sizes, seed)
        changed = [i for i in range(N_GROUPS) if together[i] != alone[i]]
        assert not changed, f"{kind}: {len(changed)} of {N_GROUPS} groups changed in batches of {sizes}"


def test_the_int8_export_runs_its_own_kernel(exports):
    from flavorfusion.models.quantized import Int8DynamicLinear

    model = runtime(exports["int8"])
    assert model.quantized and model.info["dtype"] == "int8 (quantized)"
    assert sum(isinstance(m, Int8DynamicLinear) for m in model.model.modules()) > 10


def test_through_serve_a_request_alone_and_among_15_others_gets_the_same_summary(exports, groups, tmp_path):
    """Both exports served side by side: each group's summary alone, then the same group among 15 concurrent
    requests (merged into batches by the server's batcher), for fp32 and int8."""
    from concurrent.futures import ThreadPoolExecutor

    from .serving_helpers import Server, request

    server = Server(tmp_path, [f"model.name_or_path={exports['fp32']}", f"+serve.variants.int8={exports['int8']}",
                               "generation.max_new_tokens=12", "generation.min_new_tokens=4",
                               "data.max_source_length=512", "data.k_top_longest=24", "data.max_docs_per_review=24",
                               "serve.max_batch_size=16", "serve.batch_timeout_ms=200"])
    try:
        server.wait_healthy()
        url = server.url + "/summarize"

        def summary(body: dict) -> str:
            status, _, raw = request(url, body)
            assert status == 200, raw[:300]
            return json.loads(raw)["summary"]

        for variant in ("trained", "int8"):
            alone = {g.id: summary({"reviews": g.reviews, "variant": variant}) for g in groups[:16]}
            assert len(set(alone.values())) >= 12  # distinct summaries: the comparison can fail
            bodies = [{"reviews": g.reviews, "variant": variant} for g in groups[:16]]
            with ThreadPoolExecutor(16) as pool:
                together = dict(zip([g.id for g in groups[:16]], pool.map(summary, bodies), strict=True))
            assert together == alone, variant
        metrics = request(server.url + "/metrics")[2].decode()
        batches = [line for line in metrics.splitlines() if line.startswith("flavorfusion_batch_size_count")]
        calls = {line.split('"')[1]: float(line.split()[-1]) for line in batches}
        assert calls["int8"] < 32 and calls["trained"] < 32  # the 16 concurrent requests shared generate calls
    finally:
        server.stop()


def test_evaluate_reports_the_same_rouge_for_int8_at_batch_size_1_and_16(exports, tmp_path):
    from hydra import compose, initialize_config_dir

    from flavorfusion.evaluation import evaluate as run

    from .conftest import CONF
    from .test_evaluate import QUICKSTART_DATA

    reports = {}
    for batch_size in (1, 16):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("evaluate", overrides=[
                f"model.name_or_path={exports['int8']}", *QUICKSTART_DATA[:-1], "data.subset=32", "split=all",
                "baselines.random_review=null", "baselines.centroid_review=null", "baselines.lexrank=null",
                "latency.runs=1", "latency.new_tokens=2", "zip=false", "generation.max_new_tokens=12",
                "generation.min_new_tokens=4", f"batch_size={batch_size}", f"output_dir={tmp_path / str(batch_size)}"])
        reports[batch_size] = run(cfg)["results"][0]
    scores = {size: (r.rouge1, r.rouge2, r.rougeL, r.rougeLsum) for size, r in reports.items()}
    assert scores[1] == scores[16] and scores[1][0] > 0
    examples = {size: (tmp_path / str(size) / "examples.jsonl").read_text() for size in (1, 16)}
    assert examples[1] == examples[16]
