"""The user's journey across stages, end to end on the quickstart's model: train it, prepare Google Local-style files
with grouping=language, summarize them with the default config (whose data.max_source_length, 4096, is more than
the tiny model's 1024 encoder positions), do both again with engine=beam, then serve the Beam output, with a long
request batched among normal ones."""

import json
import threading

import pyarrow.parquet as pq
import pytest

from flavorfusion.training import train

from .conftest import FAST, compose_train, run_module
from .serving_helpers import Server, request
from .test_prepare_google_local import TEST_LANGUAGES, meta, review, translated, write_gz_pair

SPANISH = ("La comida era deliciosa, los tacos al pastor estaban jugosos y la salsa verde picaba lo justo. "
           "El servicio fue amable aunque un poco lento cuando el local se llenó. ")
ENGLISH = ("The food was delicious, the tacos al pastor were juicy and the green salsa had just enough heat. "
           "Service was friendly, if a little slow once the room filled up. ")


def write_google_local(directory) -> tuple[str, str]:
    """Two restaurants, each with long English reviews and long reviews translated from Spanish: every group holds
    far more text than 1024 tokens."""
    reviews, metas = [], []
    for b in range(2):
        gmap_id = f"0x{b:04x}:journey"
        metas.append(meta(gmap_id, ["Mexican restaurant"], name=f"Taqueria {b}"))
        for i in range(5):
            reviews.append(review(f"en{b}{i}", gmap_id, ENGLISH * 12, 1_600_000_000_000 + i))
            reviews.append(review(f"es{b}{i}", gmap_id, translated(ENGLISH * 12, SPANISH * 12),
                                  1_600_000_100_000 + i))
    return write_gz_pair(directory, reviews, metas)


@pytest.mark.slow
def test_quickstart_model_prepares_summarizes_and_serves_with_default_lengths(tmp_path):
    result = train(compose_train([*FAST, "generation.min_new_tokens=3", "generation.max_new_tokens=8"],
                                 tmp_path / "train"))
    export = result.export_dir
    assert result.summarizer.model.config.max_encoder_position_embeddings == 1024

    reviews, metas = write_google_local(tmp_path)
    groups = tmp_path / "groups.parquet"
    prepared = run_module("flavorfusion.prepare", f"source.reviews={reviews}", f"source.meta={metas}",
                          "grouping=language", TEST_LANGUAGES, f"output={groups}", "progress=false",
                          f"hydra.run.dir={tmp_path}/prepare")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    table = pq.read_table(groups).to_pylist()
    assert sorted({row["group"] for row in table}) == ["en", "es"] and len(table) == 4

    # the default config: data=groups asks for 4096 source tokens, the export has 1024 positions
    summaries = tmp_path / "summaries.parquet"
    args = [f"model.name_or_path={export}", f"data.path={groups}", f"output={summaries}", "progress=false",
            "generation.max_new_tokens=8", "generation.min_new_tokens=3", f"hydra.run.dir={tmp_path}/summarize"]
    done = run_module("flavorfusion.summarize", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "inputs are truncated to its 1024 encoder positions" in done.stdout + done.stderr
    rows = pq.read_table(summaries).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in table)
    assert all(r["summary"] for r in rows)
    again = run_module("flavorfusion.summarize", *args)
    assert again.returncode == 0 and "4 review groups, 4 already done, 0 generated" in again.stdout

    # the same journey on Beam: prepare and summarize engine=beam write the same rows, and the app reads the shards
    beam_groups, beam_summaries = tmp_path / "beam_groups", tmp_path / "beam_summaries"
    prepared = run_module("flavorfusion.prepare", f"source.reviews={reviews}", f"source.meta={metas}",
                          "grouping=language", TEST_LANGUAGES, "engine=beam", f"output={beam_groups}",
                          "progress=false", f"hydra.run.dir={tmp_path}/prepare_beam")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    beam_args = [f"model.name_or_path={export}", f"data.path={beam_groups}", f"output={beam_summaries}",
                 "engine=beam", *args[3:-1], f"hydra.run.dir={tmp_path}/summarize_beam"]
    done = run_module("flavorfusion.summarize", *beam_args)
    assert done.returncode == 0, done.stderr[-3000:]
    by_id = {r["id"]: r for r in rows}
    assert {r["id"]: r for r in pq.read_table(beam_summaries).to_pylist()} == by_id

    server = Server(tmp_path, [f"model.name_or_path={export}", f"serve.summaries={beam_summaries}",
                               "serve.max_batch_size=8", "serve.batch_timeout_ms=500", "generation.max_new_tokens=8",
                               "generation.min_new_tokens=3"])
    try:
        server.wait_healthy()
        long_request = {"reviews": [ENGLISH * 16] * 5}  # about 3,000 characters x 5 reviews
        bodies = [long_request] + [{"reviews": ["Great tacos.", "Slow service but friendly staff."]}] * 7
        answers: list = [None] * len(bodies)

        def call(i):
            answers[i] = request(server.url + "/summarize", bodies[i], timeout=120)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a[0] for a in answers] == [200] * len(bodies), [a[2][:200] for a in answers]
        assert all(json.loads(a[2])["summary"] for a in answers)
        status, _, body = request(server.url + "/api/restaurants")
        assert status == 200 and "Taqueria 0" in body.decode()
        status, _, body = request(server.url + "/api/restaurant?id=0x0000:journey")
        shown = {g["group"]: g["summary"] for g in json.loads(body)["groups"]}
        assert status == 200 and shown == {r["group"]: r["summary"] for r in rows if r["business_id"] == "0x0000:journey"}
    finally:
        server.stop()
