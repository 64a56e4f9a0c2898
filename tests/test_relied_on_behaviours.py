"""Behaviours a user relies on, each checked so that breaking it fails a test (issue 22: a mutation check found
them unchecked). Most are unit-level and fast; the ones that train are marked slow and share one run."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
import torch

from flavorfusion.data.encoding import ExampleEncoder
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import in_validation
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.serving.batcher import Batcher

from .conftest import FAST, compose_train

IDS = [f"group-{i}" for i in range(300)] + ["qs-001", "é-ü", "0042", ""]


# ---- the validation split and the review selection are the same in every process ---------------------------

_SPLIT_SCRIPT = """
import json, sys
from flavorfusion.data.review_groups import in_validation
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection
ids = json.loads(sys.argv[1])
group = ReviewGroup("g-7", [f"review {i} " + "x" * i for i in range(17)], ["s"])
print(json.dumps({"split": [in_validation(i, 7, 0.3) for i in ids],
                  "chunks": ReviewSelection(12, 4, 5).for_training(group)}))
"""


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_validation_split_and_selection_are_stable_across_processes(hash_seed):
    """Training and evaluate run in different processes (and Python salts `hash` per process): the split and
    the training chunks computed in another process, with another hash seed, are this process's."""
    import os

    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", _SPLIT_SCRIPT, json.dumps(IDS)], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    theirs = json.loads(out.stdout)
    assert theirs["split"] == [in_validation(i, 7, 0.3) for i in IDS]
    group = ReviewGroup("g-7", [f"review {i} " + "x" * i for i in range(17)], ["s"])
    assert theirs["chunks"] == ReviewSelection(12, 4, 5).for_training(group)


def test_validation_split_is_pinned():
    """The split of existing ids never moves between releases (a model's held-out groups stay held out)."""
    assert [i for i in IDS[:40] if in_validation(i, 42, 0.15)] == PINNED_VALIDATION
    assert sum(in_validation(i, 42, 0.15) for i in IDS[:300]) == PINNED_COUNT
    assert not any(in_validation(i, 1, 0.0) for i in IDS) and all(in_validation(i, 1, 1.0) for i in IDS)


PINNED_VALIDATION = ["group-2", "group-20", "group-32", "group-33"]  # blake2b of "seed:id" (README: Split)
PINNED_COUNT = 53


def test_validation_split_respects_the_ratio_and_the_seed():
    for ratio in (0.1, 0.5):
        share = sum(in_validation(i, 3, ratio) for i in IDS[:300]) / 300
        assert abs(share - ratio) < 0.07
    assert [in_validation(i, 3, 0.5) for i in IDS] != [in_validation(i, 4, 0.5) for i in IDS]
    # a bigger ratio only adds groups: the same hash, compared with a bigger threshold
    small = {i for i in IDS if in_validation(i, 3, 0.2)}
    assert small < {i for i in IDS if in_validation(i, 3, 0.4)}


def test_selection_keeps_the_k_longest_and_cuts_chunks_of_max_docs():
    reviews = [f"r{i} " + "x" * (i * 3) for i in range(11)]
    group = ReviewGroup("g", reviews, ["s"])
    assert ReviewSelection(4, 2).for_validation(group) == reviews[::-1][:4]
    assert ReviewSelection(None, 2).for_validation(group) == reviews[::-1]
    chunks = ReviewSelection(7, 3, seed=1).for_training(group)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert sorted(r for c in chunks for r in c) == sorted(reviews[-7:])


def test_selection_from_config_reads_its_keys():
    from omegaconf import OmegaConf

    data = OmegaConf.create({"k_top_longest": 8, "max_docs_per_review": 4, "seed": 3, "test_ratio": 0.5})
    assert ReviewSelection.from_config(data) == ReviewSelection(k_top_longest=8, max_docs_per_review=4, seed=3)


def test_label_padding_is_what_the_loss_ignores(tokenizer):
    from flavorfusion.data.encoding import DOC_SEP, PrimeraCollator, encode_documents, encode_target

    features = [{"input_ids": encode_documents(tokenizer, ["good food"], 64), "labels": encode_target(tokenizer, t, 32)}
                for t in ("good food and a long summary of the place", "ok")]
    batch = PrimeraCollator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(DOC_SEP), 16)(features)
    short = len(features[1]["labels"])
    assert (batch["labels"][1, short:] == torch.nn.CrossEntropyLoss().ignore_index).all()
    assert batch["labels"][1, :short].tolist() == features[1]["labels"]


# ---- train_on_all_references -------------------------------------------------------------------------------

def _group_with_references():
    return ReviewGroup("g", [f"review {i} about the noodles " + "x" * i for i in range(7)],
                       ["first reference", "second one", "third summary"])


@pytest.mark.parametrize("all_references", [True, False])
def test_train_on_all_references_sets_the_training_targets(tokenizer, all_references):
    encoder = ExampleEncoder(tokenizer, ReviewSelection(6, 3, 0), 128, 32, train_on_all_references=all_references)
    group = _group_with_references()
    examples = encoder.training_examples(group)
    references = group.summary if all_references else group.summary[:1]
    assert len(examples) == 2 * len(references)  # 6 reviews kept, 3 per example: 2 chunks, each with every target
    targets = [tokenizer.decode(e["labels"], skip_special_tokens=True) for e in examples]
    assert sorted(set(targets)) == sorted(references)
    assert all(e["summary"] == group.summary for e in examples)  # every reference is kept for scoring
    validation = encoder.validation_example(group)
    assert tokenizer.decode(validation["labels"], skip_special_tokens=True) == group.summary[0]


def test_train_on_all_references_reaches_the_datamodule(tokenizer, tmp_path):
    from .test_review_groups import datamodule

    path = tmp_path / "groups.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"id": f"g{i}", "reviews": [f"review {j} of place {i}" for j in range(6)],
                                "summary": [f"place {i} is good", f"place {i} is fine"]}) + "\n")
    sizes = {}
    for flag in (True, False):
        dm = datamodule(tokenizer, path, train_on_all_references=flag)
        dm.setup()
        sizes[flag] = len(dm.train_set)
        assert all(len(s) == 2 for s in dm.val_set["summary"])
    assert sizes[True] == 2 * sizes[False] > 0


# ---- group_by_length ---------------------------------------------------------------------------------------

def test_group_by_length_sorts_batches_by_length_and_off_does_not(tokenizer, tmp_path):
    from .test_review_groups import datamodule

    path = tmp_path / "groups.jsonl"
    with open(path, "w") as f:
        for i in range(60):
            words = " ".join(f"w{j}" for j in range(1 + (i * 7) % 50))
            f.write(json.dumps({"id": f"g{i}", "reviews": [words, "short"], "summary": "s"}) + "\n")
    batches = {}
    for flag in (True, False):
        dm = datamodule(tokenizer, path, group_by_length=flag, k_top_longest=2, max_docs_per_review=2,
                        max_source_length=256, test_ratio=0.1)
        dm.setup()
        batches[flag] = [b["attention_mask"].sum(dim=1).tolist() for b in dm.train_dataloader()]
        assert sorted(n for b in batches[flag] for n in b) == sorted(len(ids) for ids in dm.train_set["input_ids"])

    def padding(flag):  # padded positions if each batch were padded to its longest example
        return sum(max(b) * len(b) - sum(b) for b in batches[flag])

    # Hugging Face's length-grouped order: mega-batches sorted longest first (the longest example swapped to the
    # front), so inside every batch the lengths fall and little is padded
    assert all(b == sorted(b, reverse=True) for b in batches[True][1:])
    assert padding(True) * 2 < padding(False)
    assert not all(b == sorted(b, reverse=True) for b in batches[False])


# ---- the batcher's wait (serve.batch_timeout_ms) -----------------------------------------------------------

def _batched_calls(timeout_ms: float, max_batch_size: int, arrivals: list[float], limit_s: float = 10):
    """Submit one item at each arrival time (seconds from start); returns [(seconds from start, items)] of every
    call of the process function."""
    calls = []

    async def main():
        start = time.monotonic()

        def process(items):
            calls.append((time.monotonic() - start, list(items)))
            return items

        batcher = Batcher(process, max_batch_size=max_batch_size, batch_timeout_ms=timeout_ms, max_queue=64)
        batcher.start()

        async def one(i, at):
            await asyncio.sleep(at)
            return await batcher.submit([i])

        try:
            results = await asyncio.wait_for(asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals))), limit_s)
        finally:
            await batcher.stop()
        assert results == [[i] for i in range(len(arrivals))]

    asyncio.run(main())
    return calls


def test_batch_timeout_ms_a_lone_item_waits_about_the_timeout():
    calls = _batched_calls(400, max_batch_size=8, arrivals=[0])
    assert len(calls) == 1
    assert 0.35 <= calls[0][0] < 2.0, calls  # milliseconds, not seconds nor microseconds


def test_batch_timeout_ms_a_full_batch_does_not_wait():
    calls = _batched_calls(10_000, max_batch_size=3, arrivals=[0, 0, 0], limit_s=20)
    assert [items for _, items in calls] == [[0, 1, 2]]
    assert calls[0][0] < 2.5, calls  # far below the 10 s wait (generous: a loaded machine delays threads)


def test_batch_timeout_ms_items_arriving_within_the_wait_share_a_batch():
    calls = _batched_calls(1200, max_batch_size=8, arrivals=[0, 0.4, 0.6])
    assert [items for _, items in calls] == [[0, 1, 2]]
    assert 1.15 <= calls[0][0] < 1.55, calls  # the wait counts from the first item (1.2 s), not the last (1.8 s)
    late = _batched_calls(100, max_batch_size=8, arrivals=[0, 0.6])
    assert [items for _, items in late] == [[0], [1]]


def test_batch_timeout_ms_zero_does_not_wait():
    calls = _batched_calls(0, max_batch_size=8, arrivals=[0])
    assert len(calls) == 1 and calls[0][0] < 0.3


def test_batcher_a_failed_batch_is_retried_item_by_item_and_the_worker_goes_on():
    calls = []

    def process(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("generation failed")
        return [f"summary of {item}" for item in items]

    async def main():
        batcher = Batcher(process, max_batch_size=4, batch_timeout_ms=1, max_queue=8)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="generation failed"):
                await asyncio.wait_for(batcher.submit(["bad", "x"]), 10)
            return await asyncio.wait_for(batcher.submit(["good"]), 10)
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == ["summary of good"]
    # the batch failed, so each item was tried alone (issue 18: only the item at fault errors)
    assert calls == [["bad", "x"], ["bad"], ["x"], ["good"]]


def test_batcher_bad_settings_are_refused():
    for kwargs in ({"max_batch_size": 0}, {"max_queue": 0}, {"batch_timeout_ms": -1}):
        with pytest.raises(ValueError):
            Batcher(lambda items: items, **{"max_batch_size": 2, "batch_timeout_ms": 1, "max_queue": 2, **kwargs})


# ---- gradient clipping -------------------------------------------------------------------------------------

def _summarizer_with_huge_gradients(tokenizer):
    from flavorfusion.models.summarizer import Summarizer
    from flavorfusion.models.tiny import build_tiny_led

    summarizer = Summarizer(build_tiny_led(tokenizer), tokenizer, optimizer=torch.optim.AdamW)
    params = [p for p in summarizer.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 100.0)
    optimizer = torch.optim.AdamW(params)
    return summarizer, params, optimizer


def _total_norm(params):
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))


def test_gradient_clipping_clips_the_gradient_norm(tokenizer):
    from types import SimpleNamespace

    summarizer, params, optimizer = _summarizer_with_huge_gradients(tokenizer)
    assert _total_norm(params) > 1000
    summarizer._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None))  # bf16/fp32: no scaler
    summarizer.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    assert _total_norm(params) == pytest.approx(0.5, rel=1e-3)


def test_gradient_clipping_by_value(tokenizer):
    from types import SimpleNamespace

    summarizer, params, optimizer = _summarizer_with_huge_gradients(tokenizer)
    summarizer._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None))
    summarizer.configure_gradient_clipping(optimizer, gradient_clip_val=0.25, gradient_clip_algorithm="value")
    assert max(float(p.grad.abs().max()) for p in params) == pytest.approx(0.25)


# ---- one short training run probed for clipping and the W&B sample table -----------------------------------

class GradientNormProbe:
    """Records the total gradient norm the optimizer steps with (after Lightning's clipping)."""

    norms: list = []

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class Probe(Callback):
            def on_fit_start(self, trainer, pl_module):
                GradientNormProbe.norms = []
                for optimizer in trainer.optimizers:
                    optimizer.register_step_post_hook(self._record)

            @staticmethod
            def _record(optimizer, args, kwargs):
                params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                GradientNormProbe.norms.append(_total_norm(params))

        return Probe()


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    from lightning.pytorch.loggers import WandbLogger

    from flavorfusion.training import train

    logged = []
    original = WandbLogger.log_text

    def log_text(self, key, columns=None, data=None, **kwargs):
        logged.append({"key": key, "columns": columns, "data": data})
        return original(self, key, columns=columns, data=data, **kwargs)

    out = tmp_path_factory.mktemp("probed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WandbLogger, "log_text", log_text)
        mp.setenv("WANDB_DIR", str(out / "wandb"))
        result = train(compose_train([*FAST, "logger=wandb", "trainer.gradient_clip_val=0.01",
                                      "model.optimizer.lr=1e-2", "model.num_logged_samples=3",
                                      "+callbacks.grad_probe._target_=tests.test_relied_on_behaviours.GradientNormProbe"],
                                     out))
    return result, logged


@pytest.mark.slow
def test_gradient_clipping_in_training_bounds_every_step(probed_run):
    norms = GradientNormProbe.norms
    assert len(norms) == 3  # one optimizer step per training batch
    assert all(n <= 0.01 * 1.001 for n in norms), norms


@pytest.mark.slow
def test_val_samples_table_is_logged_with_the_generated_rows(probed_run):
    result, logged = probed_run
    tables = [entry for entry in logged if entry["key"] == "val/samples"]
    assert len(tables) == 1  # one validation epoch (no sanity check logged)
    table = tables[0]
    assert table["columns"] == ["step", "generated", "references"]
    rows = table["data"]
    val_set = result.datamodule.val_set
    assert len(rows) == min(3, len(val_set))
    assert [row[2] for row in rows] == [" ||| ".join(val_set[i]["summary"]) for i in range(len(rows))]
    assert all(row[0] == result.trainer.global_step for row in rows)
    # the generated column is what the model generates for those groups
    first = result.datamodule.val_dataloader()  # the first validation batch, as validation generated it
    expected = result.summarizer.generate(next(iter(first)), cache="dynamic")
    assert [row[1] for row in rows] == expected[: len(rows)]


# ---- evaluate split=validation -----------------------------------------------------------------------------

def test_evaluate_split_validation_scores_exactly_the_held_out_groups(tmp_path):
    from flavorfusion.evaluation import evaluate as run

    from .test_evaluate import FAST_EVAL, compose_evaluate

    overrides = [o for o in FAST_EVAL if not o.startswith(("split=", "data.subset="))]
    cfg = compose_evaluate(["model=lexrank", "baselines.random_review=null", "baselines.centroid_review=null",
                            *overrides, "split=validation", "data.test_ratio=0.2", "data.seed=3", "data.subset=60"],
                           tmp_path)
    out = run(cfg)
    with open(out["paths"]["examples.jsonl"]) as f:
        scored = [json.loads(line)["id"] for line in f]
    with open(cfg.data.path) as f:
        every = [json.loads(line)["id"] for line in f if line.strip()][:60]
    held_out = [i for i in every if in_validation(i, 3, 0.2)]
    assert 0 < len(held_out) < len(every)
    assert scored == held_out  # exactly training's held-out groups, in the table's order
    assert out["results"][0].n_examples == len(held_out)


# ---- summarize's provenance: the weights hash ---------------------------------------------------------------

def test_weights_sha256_changes_with_any_weight_name_dtype_or_shape(tokenizer):
    from flavorfusion.models.runtime import weights_sha256
    from flavorfusion.models.tiny import build_tiny_led

    model = build_tiny_led(tokenizer)
    digest = weights_sha256(model)
    assert digest == weights_sha256(build_tiny_led(tokenizer)) and len(digest) == 64  # same weights, same hash
    assert digest != weights_sha256(build_tiny_led(tokenizer, seed=1))
    with torch.no_grad():
        model.led.encoder.layers[0].fc1.weight[0, 0] += 1e-3
    changed = weights_sha256(model)
    assert changed != digest
    assert weights_sha256(model.to(torch.bfloat16)) != changed  # the dtype is hashed


def test_weights_sha256_tells_apart_the_same_bytes_under_another_name_dtype_or_shape():
    from flavorfusion.models.runtime import weights_sha256

    def model(**tensors):
        return type("Weights", (), {"state_dict": lambda self: tensors})()

    zeros = torch.zeros(4, dtype=torch.float32)  # 16 zero bytes, as are the int32 and reshaped variants below
    digests = {weights_sha256(model(a=zeros)), weights_sha256(model(b=zeros)),
               weights_sha256(model(a=zeros.view(2, 2))), weights_sha256(model(a=torch.zeros(4, dtype=torch.int32)))}
    assert len(digests) == 4
    assert weights_sha256(model(a=zeros, b=torch.ones(2))) == weights_sha256(model(b=torch.ones(2), a=zeros.clone()))


def test_summarize_refuses_an_output_written_by_other_weights_with_the_same_generation(tokenizer, tmp_path):
    import shutil

    from flavorfusion.errors import ConfigError
    from flavorfusion.models.loading import save_pretrained
    from flavorfusion.models.tiny import build_tiny_led
    from flavorfusion.summarization import summarize

    from .test_summarize import compose_summarize

    data = "data.path=${ff.resource:quickstart_reviews.jsonl}"
    first = save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path / "first"))
    other = save_pretrained(build_tiny_led(tokenizer, seed=1), tokenizer, str(tmp_path / "other"))
    output = tmp_path / "summaries.parquet"
    common = [data, f"output={output}", "data.subset=4", "generation.max_new_tokens=3", "generation.min_new_tokens=1"]
    summarize(compose_summarize([f"model.name_or_path={first}", *common]))
    with pytest.raises(ConfigError, match=r"^output=.*written by another model or other generation settings"):
        summarize(compose_summarize([f"model.name_or_path={other}", *common, "data.subset=8"]))
    # the same weights copied elsewhere are the same model: the hash, not the path, decides
    shutil.copytree(first, tmp_path / "copy")
    report = summarize(compose_summarize([f"model.name_or_path={tmp_path / 'copy'}", *common, "data.subset=8"]))
    assert report.already_done == 4 and report.generated == 4


def test_check_same_provenance_compares_weights_and_settings():
    from flavorfusion.errors import ConfigError
    from flavorfusion.summarization.local import check_same_provenance

    def expected(sha: str, generation: str, contrast: str = "{}") -> dict:
        return {"model_sha256": sha, "generation": generation, "contrast": contrast}

    found = [{"path": "a.parquet", **expected("abc", '{"num_beams": 1}')},
             {"path": "b.parquet", **expected("abc", '{"num_beams": 1}')}]
    check_same_provenance(found, expected("abc", '{"num_beams": 1}'), "out.parquet")
    check_same_provenance([], expected("xyz", "{}"), "out.parquet")
    for changed in (expected("abd", '{"num_beams": 1}'), expected("abc", '{"num_beams": 2}'),
                    expected("abc", '{"num_beams": 1}', '{"min_z": 3}')):
        with pytest.raises(ConfigError, match=r"^output=out.parquet: a.parquet was written by another model"):
            check_same_provenance(found, changed, "out.parquet")
    with pytest.raises(ConfigError, match="b.parquet"):  # every file is checked, not only the first
        check_same_provenance([found[0], {**found[1], "model_sha256": "zzz"}], expected("abc", '{"num_beams": 1}'),
                              "o")


def test_done_ids_reads_the_output_and_every_part(tmp_path):
    import pyarrow as pa

    from flavorfusion.errors import DataError
    from flavorfusion.summarization.local import OUTPUT_SCHEMA, done_ids, parts_dir, write_part

    output = str(tmp_path / "s.parquet")
    assert done_ids(output) == (set(), [])

    def table(ids, sha):
        return pa.Table.from_pylist([{"id": i, "summary": "x", "model_sha256": sha, "generation": "{}"} for i in ids],
                                    schema=OUTPUT_SCHEMA)

    import os

    os.makedirs(parts_dir(output))
    write_part(table(["a", "b"], "s1"), parts_dir(output), 0)
    write_part(table(["c"], "s2"), parts_dir(output), 1)
    write_part(table([], "s3"), parts_dir(output), 2)
    import pyarrow.parquet as pq

    pq.write_table(table(["z"], "s0"), output)
    ids, provenance = done_ids(output)
    assert ids == {"a", "b", "c", "z"}
    assert [p["model_sha256"] for p in provenance] == ["s0", "s1", "s2"]  # output first, then parts, oldest first
    assert provenance[0]["path"] == output
    pq.write_table(pa.table({"other": [1]}), output)
    with pytest.raises(DataError, match=r"s.parquet is not a summarize output"):
        done_ids(output)
