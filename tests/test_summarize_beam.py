"""summarize engine=beam (RunInference on the in-process runner): the rows engine=local writes, dead letters for a
group that fails, length-bucketed batches, the Dataflow GPU dry run, and the journey raw files -> prepare
engine=beam -> summarize engine=beam -> the app."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir

from flavorfusion.errors import ConfigError
from flavorfusion.models.loading import load_pretrained, save_pretrained
from flavorfusion.models.runtime import InferenceRuntime
from flavorfusion.models.tiny import build_tiny_led, widen_weights
from flavorfusion.preparation import prepare
from flavorfusion.resources import resource_path
from flavorfusion.summarization import failed_path, summarize

from .conftest import CONF, run_module
from .contrast_data import write_restaurants
from .serving_helpers import Server, request
from .test_prepare_google_local import compose_prepare, meta, review, write_gz_pair

pytest.importorskip("apache_beam")

FAST = ["generation.max_new_tokens=8", "generation.min_new_tokens=4", "batch_size=8", "progress=false",
        "data.max_source_length=512"]
N_RESTAURANTS = 210
POISON = "this review makes the model fail"


def compose_summarize(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("summarize", overrides=[*FAST, *overrides])


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer) -> str:
    """The quickstart's tiny LED shape. Its random init (std 0.02) decodes one string for every input, which would
    make "the same summaries" hold trivially; wider weights make the summary depend on the input."""
    model = widen_weights(build_tiny_led(tokenizer))
    return save_pretrained(model, tokenizer, str(tmp_path_factory.mktemp("export") / "model"))


def write_google_local(directory, n: int = N_RESTAURANTS) -> tuple[str, str]:
    """`n` restaurants, each with 3-7 reviews drawn from the shipped sample (lengths vary, so batches do); the
    first restaurant's newest review is the poison."""
    rng = random.Random(3)
    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        texts = [t for line in f if line.strip() for t in json.loads(line)["reviews"] if len(t) >= 20]
    metas, reviews = [], []
    for b in range(n):
        gmap_id = f"0x{b:04x}:beam"
        metas.append(meta(gmap_id, ["Thai restaurant"], name=f"Place {b}"))
        for i, text in enumerate(rng.sample(texts, rng.randint(3, 7))):
            reviews.append(review(f"u{b}-{i}", gmap_id, text, 1_600_000_000_000 + i))
    reviews.append(review("poisoner", "0x0000:beam", f"{POISON}. " * 12, 1_700_000_000_000))  # the longest: selected
    return write_gz_pair(directory, reviews, metas)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[str, str]:
    return write_google_local(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def groups(raw, tmp_path_factory) -> str:
    """The raw files prepared by engine=beam: a directory of Parquet shards."""
    reviews, metas = raw
    output = tmp_path_factory.mktemp("prepared") / "groups"
    report = prepare(compose_prepare([f"source.reviews={reviews}", f"source.meta={metas}", "source.language_id=null",
                                      "engine=beam", f"output={output}"]))
    assert report["written"]["rows"] == N_RESTAURANTS
    return str(output)


@pytest.fixture
def poisoned(monkeypatch):
    """InferenceRuntime.generate fails for any batch holding the poisoned group (in-process: the runner is in_memory);
    the lengths of every batch it is given are recorded."""
    generate = InferenceRuntime.generate
    batches: list[list[int]] = []

    def failing(self, features, generation=None):
        batches.append([len(f["input_ids"]) for f in features])
        if any(POISON in self.tokenizer.decode(f["input_ids"]) for f in features):
            raise RuntimeError("poisoned group\nsecond line of the error")
        return generate(self, features, generation)

    monkeypatch.setattr(InferenceRuntime, "generate", failing)
    return batches


def rows_by_id(path) -> list[dict]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda row: row["id"])


def test_beam_writes_the_rows_local_writes_and_dead_letters_the_failing_group(export, groups, tmp_path, poisoned):
    common = [f"model.name_or_path={export}", f"data.path={groups}"]
    local = summarize(compose_summarize([*common, f"output={tmp_path / 'local.parquet'}"]))
    beam = summarize(compose_summarize([*common, f"output={tmp_path / 'beam'}", "engine=beam"]))

    local_rows, beam_rows = rows_by_id(tmp_path / "local.parquet"), rows_by_id(tmp_path / "beam")
    assert len(beam_rows) == N_RESTAURANTS - 1 and beam_rows == local_rows
    assert len({row["summary"] for row in beam_rows}) > N_RESTAURANTS // 2  # summaries depend on the input
    assert {row["model_sha256"] for row in beam_rows} == {local_rows[0]["model_sha256"]}

    # the poisoned group alone fails (its batch is retried item by item), with the error's first line
    for report in (local, beam):
        assert (report.total, report.generated, report.failed) == (N_RESTAURANTS, N_RESTAURANTS - 1, 1)
    local_failed = [json.loads(line) for line in Path(failed_path(str(tmp_path / "local.parquet"))).read_text().splitlines()]
    beam_failed = [json.loads(line) for f in sorted((tmp_path / "beam" / "_failed").iterdir())
                   for line in f.read_text().splitlines()]
    assert local_failed == beam_failed == [{"id": local_failed[0]["id"], "business_id": "0x0000:beam",
                                            "name": "Place 0", "group": "all",
                                            "error": "RuntimeError: poisoned group"}]
    assert beam.dead_letters == f"{tmp_path / 'beam'}/_failed"


def test_beam_batches_groups_of_similar_length(export, groups, tmp_path, poisoned):
    from flavorfusion.summarization.beam import length_buckets

    buckets = length_buckets(512)
    assert buckets == [64, 128, 256]
    summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups}", f"output={tmp_path / 'o'}",
                                 "engine=beam", "batch_size=4"]))
    batches = [b for b in poisoned if len(b) > 1]
    assert batches and max(len(b) for b in batches) <= 4
    for lengths in batches:  # one bucket per batch: bisect_right(buckets, length) is the same for all
        assert len({sum(length >= edge for edge in buckets) for length in lengths}) == 1, lengths


def test_a_rerun_of_local_retries_the_dead_letters(export, groups, tmp_path, monkeypatch, poisoned):
    output = tmp_path / "summaries.parquet"
    args = [f"model.name_or_path={export}", f"data.path={groups}", f"output={output}"]
    assert summarize(compose_summarize(args)).failed == 1
    monkeypatch.undo()  # the model works again
    again = summarize(compose_summarize(args))
    assert (again.already_done, again.generated, again.failed) == (N_RESTAURANTS - 1, 1, 0)
    assert len(rows_by_id(output)) == N_RESTAURANTS and not (tmp_path / "summaries.failed.jsonl").exists()


def test_quantized_and_gs_style_sources_load_through_the_one_loader(export, tokenizer, tmp_path):
    """A model in object storage (here fsspec's memory://, as gs:// on Dataflow) is copied, then loaded."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for path in sorted(Path(export).iterdir()):
        fs.pipe(f"/models/tiny/{path.name}", path.read_bytes())
    model, _ = load_pretrained("memory://models/tiny")
    reference, _ = load_pretrained(export)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                                                 strict=True))
    # an export uploaded again to the same path is copied again, not read from the first copy
    other = save_pretrained(build_tiny_led(tokenizer, seed=1), tokenizer, str(tmp_path / "other"))
    for path in sorted(Path(other).iterdir()):
        fs.pipe(f"/models/tiny/{path.name}", path.read_bytes())
    reloaded, _ = load_pretrained("memory://models/tiny")
    assert not torch.equal(reloaded.state_dict()["lm_head.weight"], model.state_dict()["lm_head.weight"])
    with pytest.raises(ConfigError, match=r"^model\.name_or_path=memory://models/nothing is not a directory$"):
        load_pretrained("memory://models/nothing")


DATAFLOW = ["engine=dataflow_l4", "engine.dry_run=true", "engine.dataflow.project=my-project",
            "engine.dataflow.temp_location=gs://my-bucket/tmp",
            "engine.dataflow.sdk_container_image=us-docker.pkg.dev/my-project/repo/flavorfusion-beam-gpu:1"]


def test_dataflow_gpu_dry_run_prints_the_job(export, groups, tmp_path):
    result = run_module("flavorfusion.summarize", *FAST, *DATAFLOW, f"model.name_or_path={export}",
                        f"data.path={groups}", "output=gs://my-bucket/summaries", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Dataflow dry run: the job was built and validated, and not submitted." in out
    for expected in ("dataflow_service_options: ['worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver']",
                     "machine_type: g2-standard-8", "sdk_container_image: us-docker.pkg.dev/my-project/repo/",
                     "experiments: ['no_use_multiple_sdk_containers']", "job_name: flavorfusion-summarize-",
                     "Summarize  <- Encode", "WriteDeadLetters  <- ToRows", "WriteParquet  <- ToTables", "is a local directory: Dataflow workers read it at that path only"):
        assert expected in out, out


@pytest.mark.parametrize(("override", "message"), [
    ("model.name_or_path=/nonexistent/model", r"error: model\.name_or_path=/nonexistent/model is not a directory"),
    ("data.path=/nonexistent/groups", r"error: no file matches '/nonexistent/groups'"),
])
def test_dataflow_dry_run_fails_in_one_line_without_model_or_input(export, groups, tmp_path, override, message):
    result = run_module("flavorfusion.summarize", *FAST, *DATAFLOW, f"model.name_or_path={export}",
                        f"data.path={groups}", "output=gs://my-bucket/summaries", override,
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(message, lines[0]), result.stderr[-2000:]


@pytest.mark.slow
def test_raw_files_to_the_app_on_beam(export, raw, tmp_path):
    """Raw files -> prepare engine=beam -> summarize engine=beam -> serve serve.summaries=<that directory>."""
    reviews, metas = raw
    groups = tmp_path / "groups"
    prepared = run_module("flavorfusion.prepare", f"source.reviews={reviews}", f"source.meta={metas}",
                          "source.language_id=null", "engine=beam", f"output={groups}", "progress=false",
                          f"hydra.run.dir={tmp_path}/prepare")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    summaries = tmp_path / "summaries"
    summarized = run_module("flavorfusion.summarize", *FAST, "engine=beam", f"model.name_or_path={export}",
                            f"data.path={groups}", f"output={summaries}", f"hydra.run.dir={tmp_path}/summarize")
    assert summarized.returncode == 0, summarized.stderr[-2000:]
    assert f"{summaries}: {N_RESTAURANTS} review groups, 0 already done, {N_RESTAURANTS} generated" in summarized.stdout
    expected = {row["business_id"]: row["summary"] for row in pq.read_table(summaries).to_pylist()}

    server = Server(tmp_path, [f"model.name_or_path={export}", f"serve.summaries={summaries}",
                                "serve.min_group_reviews=1"])
    try:
        server.wait_healthy()
        status, _, body = request(f"{server.url}/api/restaurants?q=Place%2020")
        assert status == 200, body
        found = json.loads(body)
        assert {"business_id": "0x0014:beam", "name": "Place 20", "n_groups": 1} in found["restaurants"]
        for business_id in ("0x0014:beam", "0x00d1:beam"):
            status, _, body = request(f"{server.url}/api/restaurant?id={business_id}")
            assert status == 200, body
            shown = json.loads(body)["groups"]
            assert [g["summary"] for g in shown] == [expected[business_id]] and shown[0]["summary"]
        status, _, page = request(f"{server.url}/app")
        assert status == 200 and b"<html" in page
    finally:
        server.stop()


@pytest.mark.slow
def test_a_quantized_export_runs_on_beam_as_on_local(export, groups, tmp_path):
    """An int8 export loads through the one loader on the workers too (and its tokenizer alone for encoding).
    Dynamic int8 quantizes activations with one scale per tensor, the whole batch's: a summary depends on what it
    is batched with, and the engines batch differently. Batches of one make the rows comparable."""
    from omegaconf import OmegaConf

    from flavorfusion.compression.quantization import export_quantized

    int8 = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                              "export_dir": str(tmp_path / "int8")}), export)
    common = [f"model.name_or_path={int8}", f"data.path={groups}", "batch_size=1"]
    summarize(compose_summarize([*common, f"output={tmp_path / 'local.parquet'}"]))
    summarize(compose_summarize([*common, f"output={tmp_path / 'beam'}", "engine=beam"]))
    local_rows, beam_rows = rows_by_id(tmp_path / "local.parquet"), rows_by_id(tmp_path / "beam")
    assert len(beam_rows) == N_RESTAURANTS and beam_rows == local_rows
    assert {row["model"] for row in beam_rows} == {int8}
    fp_rows = rows_by_id(summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups}",
                                                      f"output={tmp_path / 'fp.parquet'}"])).output)
    assert {row["model_sha256"] for row in fp_rows}.isdisjoint({row["model_sha256"] for row in beam_rows})


def test_beam_and_local_write_the_same_terms_quotes_and_specificity(export, tmp_path):
    """Restaurants of 2-3 groups, each dwelling on its own theme: both engines write the same distinctive terms,
    quotes and notes in every row, and the same specificity report beside the output."""
    rows = write_restaurants(tmp_path / "groups.parquet", 90)
    assert len(rows) >= 200
    common = [f"model.name_or_path={export}", f"data.path={tmp_path / 'groups.parquet'}"]
    local = summarize(compose_summarize([*common, f"output={tmp_path / 'local.parquet'}"]))
    beam = summarize(compose_summarize([*common, f"output={tmp_path / 'beam'}", "engine=beam"]))

    local_rows, beam_rows = rows_by_id(tmp_path / "local.parquet"), rows_by_id(tmp_path / "beam")
    assert len(local_rows) == len(rows) and beam_rows == local_rows
    with_terms = [row for row in local_rows if row["distinctive_terms"]]
    assert len(with_terms) > len(rows) // 2 and all(t["z"] >= 1.96 for r in with_terms for t in r["distinctive_terms"])
    assert all(row["quotes"] and row["contrast_note"] is None for row in with_terms)
    theme = {row["id"]: row["summary"].removeprefix("A place known for its ").rstrip(".") for row in rows}
    spice = [row for row in with_terms if theme[row["id"]] == "spice"]
    assert spice and all({"spicy", "chili", "heat", "fiery", "chili heat"} & {t["term"] for t in row["distinctive_terms"]}
                         for row in spice)

    local_json = json.loads((tmp_path / "local.contrast.json").read_text())
    beam_json = json.loads((tmp_path / "beam.contrast.json").read_text())
    assert local_json == beam_json == local.specificity == beam.specificity
    assert local_json["summaries"] == len(rows) and local_json["restaurants"] == 90
    assert len(local_json["per_restaurant"]) == 90 and 0.3 < local_json["chance"] < 0.5
