"""prepare engine=beam: the same rows and the same report as engine=local, on the in-process runner;
the Dataflow dry run; bad input and config."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flavorfusion.data.record import SCHEMA
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.prepare import prepare
from tests.test_prepare_google_local import (
    ES_ORIGINALS,
    FR_ORIGINAL,
    TEST_LANGUAGES,
    base_overrides,
    compose_prepare,
    meta,
    review,
    translated,
    write_pair,
)

pytest.importorskip("apache_beam")

BEAM = ["engine=beam", "engine.lines_per_batch=500"]
COMPARED = ("inputs", "written", "grouping")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    return write_pair(tmp_path_factory.mktemp("google_local"))


def write_generated(directory: Path, seed: int = 7) -> dict[str, str]:
    """Several .json.gz files: 3 metadata files (a business listed twice across files), 4 review files,
    about 6,000 lines; businesses spread over every file, popular ones over the cap, equal times
    (ties), duplicates within and across files, broken and blank lines, unknown businesses."""
    rng = random.Random(seed)
    ids = [f"0x{rng.getrandbits(48):012x}:0x{rng.getrandbits(48):012x}" for _ in range(120)]
    categories = ["Mexican restaurant", "Pizza restaurant", "Thai restaurant", "Gift shop", "Dentist"]
    metas: list[list[str]] = [[], [], []]
    for i, gmap_id in enumerate(ids):
        category = rng.choice(categories) if i % 10 else None
        metas[i % 3].append(json.dumps(meta(gmap_id, category, f"Place {i}")))
    metas[2].append(json.dumps(meta(ids[0], ["Gift shop"], "Place 0 again")))  # duplicate across files
    metas[1].append("{broken")
    metas[0].append("")

    english = [f"The {w} was good and the staff were friendly, we will come back {n}." for n in range(40)
               for w in ("food", "soup", "pizza")]
    spanish = [(f"In English: Spanish review {i}, the food was excellent.", o) for i, o in enumerate(ES_ORIGINALS)]
    popularity = [1.0 / (rank + 3) for rank in range(len(ids))]
    files: list[list[bytes]] = [[], [], [], []]
    previous: list[bytes] = []
    t = 1_600_000_000_000
    for n in range(6000):
        target = files[rng.randrange(4)]
        roll = rng.random()
        if previous and roll < 0.03:  # the same line again, maybe in another file
            target.append(rng.choice(previous))
            continue
        if roll < 0.04:
            target.append(rng.choice([b"", b"   ", b'{"user_id": "x", "text": "cut', b"[1]"]))
            continue
        gmap_id = rng.choices(ids, weights=popularity)[0] if roll > 0.06 else f"unknown-{n}"
        if roll < 0.10:
            text = None
        elif roll < 0.25:
            english_text, original = rng.choice(spanish)
            text = translated(english_text, original)
        elif roll < 0.30:
            text = translated("The pizza was delicious and the service very kind.", FR_ORIGINAL)
        elif roll < 0.33:
            text = "Short"
        else:
            text = f"{rng.choice(english)} #{n % 500}"
        when = t + rng.randrange(50)  # a narrow range: many equal times
        line = json.dumps(review(f"u{rng.randrange(300)}", gmap_id, text, when, rng.choice(["Ana Garcia", "Bo"])))
        target.append(line.encode())
        previous.append(line.encode())
    paths = {"meta": [], "reviews": []}
    for role, contents in (("meta", [[m.encode() for m in f] for f in metas]), ("reviews", files)):
        for i, lines in enumerate(contents):
            path = directory / f"{role}-{i}.json.gz"
            with gzip.open(path, "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
            paths[role].append(str(path))
    return {role: f"[{','.join(p)}]" for role, p in paths.items()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, str]:
    return write_generated(tmp_path_factory.mktemp("generated"))


def pair_inputs(pair) -> list[str]:
    """The synthetic pair's overrides, without the output."""
    return [o for o in base_overrides(pair, Path("unused")) if not o.startswith("output=")]


def run_both(overrides: list[str], tmp_path: Path, beam: list[str] = ()) -> tuple[dict, dict, Path, Path]:
    local_out, beam_out = tmp_path / "local.parquet", tmp_path / "beam"
    local = prepare(compose_prepare([*overrides, f"output={local_out}"]))
    beam = prepare(compose_prepare([*overrides, *BEAM, *beam, f"output={beam_out}"]))
    return local, beam, local_out, beam_out


def assert_same(local: dict, beam: dict, local_out: Path, beam_out: Path) -> None:
    for key in COMPARED:
        assert beam[key] == local[key], key
    local_rows = pq.read_table(local_out).sort_by([("business_id", "ascending"), ("group", "ascending")])
    beam_table = pq.read_table(beam_out)
    assert beam_table.schema.remove_metadata().equals(SCHEMA)
    beam_rows = beam_table.sort_by([("business_id", "ascending"), ("group", "ascending")])
    assert beam_rows.to_pylist() == local_rows.to_pylist()
    saved = json.loads(beam_out.with_suffix(".report.json").read_text())
    assert {k: saved[k] for k in COMPARED} == {k: local[k] for k in COMPARED}


@pytest.mark.parametrize("grouping", ["none", "language", "surname"])
def test_beam_equals_local_on_the_synthetic_pair(pair, tmp_path, grouping):
    if grouping == "surname":
        pytest.importorskip("ethnicolr")
    local, beam, local_out, beam_out = run_both([*pair_inputs(pair), f"grouping={grouping}"], tmp_path)
    assert_same(local, beam, local_out, beam_out)
    assert beam["inputs"]["reviews"]["dropped"]["malformed_json"] == 3


@pytest.mark.parametrize("grouping", ["none", "language"])
def test_beam_equals_local_on_generated_gz_files(generated, tmp_path, grouping):
    overrides = [
        f"source.reviews={generated['reviews']}",
        f"source.meta={generated['meta']}",
        "source.max_reviews_per_business=15",
        f"grouping={grouping}",
        TEST_LANGUAGES,
    ]
    local, beam, local_out, beam_out = run_both(overrides, tmp_path)
    assert_same(local, beam, local_out, beam_out)
    reviews = local["inputs"]["reviews"]
    # the set exercises what it is for: several files, the cap, duplicates, every kind of bad line
    assert len(reviews["files"]) == 4 and reviews["lines"] >= 6000
    for reason in ("over_cap", "duplicate", "malformed_json", "blank_line", "unknown_business", "not_restaurant",
                   "null_text", "too_short"):
        assert reviews["dropped"][reason] > 0, reason
    assert local["inputs"]["meta"]["dropped"]["duplicate"] == 1
    if grouping == "language":
        assert local["written"]["rows_per_group"].get("es", 0) > 0
        assert reviews["dropped"]["group_too_small"] > 0


def test_beam_output_reads_as_a_directory_of_shards(pair, tmp_path):
    overrides = [*pair_inputs(pair), "source.language_id=null"]
    _, _, local_out, beam_out = run_both(overrides, tmp_path, beam=["engine.num_shards=2"])
    assert sorted(p.name for p in beam_out.iterdir()) == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    columns = {"id": "id", "reviews": "reviews", "summary": None}
    local_groups, _ = ReviewTable(path=str(local_out), columns=columns).groups()
    beam_groups, _ = ReviewTable(path=str(beam_out), columns=columns).groups()  # a directory, as data.path
    assert sorted(beam_groups, key=lambda g: g.id) == sorted(local_groups, key=lambda g: g.id)
    # a second run replaces the shards, and leaves no staging directory behind
    prepare(compose_prepare([*overrides, *BEAM, "engine.num_shards=1", f"output={beam_out}"]))
    assert [p.name for p in beam_out.iterdir()] == ["part-00000-of-00001.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beam", "beam.report.json", "local.parquet",
                                                          "local.report.json"]


def test_dataflow_dry_run_builds_the_job_from_config(pair, tmp_path, capsys):
    overrides = [
        "source.reviews=gs://my-bucket/raw/review-*.json.gz",
        "source.meta=gs://my-bucket/raw/meta-*.json.gz",
        "grouping=language",
        "engine=beam",
        "engine.runner=DataflowRunner",
        "engine.dry_run=true",
        "engine.dataflow.project=my-project",
        "engine.dataflow.temp_location=gs://my-bucket/tmp",
        "engine.dataflow.sdk_container_image=us-docker.pkg.dev/my-project/ff/beam:latest",
        "engine.dataflow.max_num_workers=20",
        f"output={tmp_path}/groups",  # where a real run would write: a dry run writes nothing there
    ]
    result = prepare(compose_prepare(overrides))
    printed = capsys.readouterr().out
    assert result["dry_run"] is True
    steps = [step.split("  <-")[0] for step in result["steps"]]
    for step in ("ReadLines", "SpreadLines", "ScanReviews", "ByBusiness", "CapReviews", "GroupRows",
                 "WriteParquet", "SumTallies"):
        assert step in steps and step in printed
    assert "ScanReviews  <- MergeMeta, SpreadLines" in result["steps"]  # the index is a side input
    options = result["options"]
    assert options["runner"] == "DataflowRunner" and options["project"] == "my-project"
    assert options["machine_type"] == "n2-highmem-4" and options["max_num_workers"] == 20
    assert "not submitted" in printed and "machine_type: n2-highmem-4" in printed
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["engine.runner=DirectRunner"], "engine.runner=DirectRunner must be one of"),
        (["engine.runner=DataflowRunner", "engine.dataflow.project=p"], "engine.dataflow.temp_location"),
        (["engine.runner=DataflowRunner", "engine.dataflow.project=p", "engine.dataflow.temp_location=/tmp/x"],
         "must be a gs:// path"),
        (["engine.runner=DataflowRunner", "engine.dataflow.project=p", "engine.dataflow.temp_location=gs://b/t"],
         "engine.dataflow.sdk_container_image"),
        (["engine.runner=DataflowRunner", "+engine.dataflow.machine_typ=n2-standard-4"],
         "engine.dataflow.machine_typ is not a Beam pipeline option"),
        (["engine.dry_run=true"], "engine.runner=DataflowRunner"),
        (["engine.lines_per_batch=0"], "engine.lines_per_batch"),
        (["format=csv"], "format=csv"),
    ],
)
def test_bad_engine_config_is_one_clear_error(pair, tmp_path, overrides, message):
    base = [*pair_inputs(pair), "source.language_id=null", "engine=beam", f"output={tmp_path / 'out'}"]
    with pytest.raises(ConfigError, match=re.escape(message)):
        prepare(compose_prepare([*base, *overrides]))
    assert list(tmp_path.iterdir()) == []


def test_lsars_is_refused(tmp_path):
    cfg = compose_prepare(["source=lsars", f"source.path={tmp_path / 'x.jsonl'}", *BEAM, f"output={tmp_path / 'o'}"])
    with pytest.raises(ConfigError, match="source=lsars fits engine=local"):
        prepare(cfg)


def test_missing_input_fails_before_the_pipeline_starts(pair, tmp_path):
    cfg = compose_prepare([f"source.reviews={tmp_path / 'nope.json.gz'}", f"source.meta={pair['meta']}",
                           *BEAM, f"output={tmp_path / 'out'}"])
    with pytest.raises(DataError, match="nope.json.gz"):
        prepare(cfg)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_gzip_fails_naming_the_file_and_writes_nothing(pair, tmp_path):
    broken = tmp_path / "reviews.json.gz"
    broken.write_bytes(pair["reviews"].read_bytes()[:-40])  # truncated
    output = tmp_path / "out"
    cfg = compose_prepare([f"source.reviews={broken}", f"source.meta={pair['meta']}", "source.language_id=null",
                           *BEAM, f"output={output}"])
    with pytest.raises(DataError, match="reviews.json.gz"):
        prepare(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.json.gz"]


def test_summarize_reads_the_shards_directory(pair, tmp_path, tokenizer):
    """The journey: prepare engine=beam -> a directory of shards -> summarize data.path=DIR."""
    from flavorfusion.models.loading import save_pretrained
    from flavorfusion.models.tiny import build_tiny_led
    from flavorfusion.summarization import summarize
    from tests.test_summarize import compose_summarize

    groups = tmp_path / "groups"
    prepare(compose_prepare([*pair_inputs(pair), "grouping=language", *BEAM, "engine.num_shards=2",
                             f"output={groups}"]))
    export = save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path / "model"))
    output = tmp_path / "summaries.parquet"
    report = summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups}", f"output={output}"]))
    rows = pq.read_table(output).to_pylist()
    assert report.generated == len(rows) == 3
    assert sorted(r["id"] for r in rows) == ["g_r1:en", "g_r1:es", "g_r2:en"]
    assert {r["group"] for r in rows} == {"en", "es"} and all(r["summary"] for r in rows)


def test_nothing_kept_gives_an_empty_dataset_and_equal_reports(tmp_path):
    """No restaurant review survives (a user_id that is an object is a missing field, not a crash):
    both engines still write a readable, empty table and the same report."""
    (tmp_path / "meta.json").write_text(json.dumps(meta("g1", ["Gift shop"])) + "\n"
                                        + json.dumps(meta("g2", ["Pizza restaurant"])) + "\n")
    lines = [review("u1", "g1", "A fine gift shop with many things to see.", 1),
             review({"id": 1}, "g2", "A user id that is an object, with long text.", 2),
             review(["a"], "g2", "A user id that is a list, with a long text.", 3)]
    (tmp_path / "reviews.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    inputs = [f"source.reviews={tmp_path / 'reviews.json'}", f"source.meta={tmp_path / 'meta.json'}",
              "source.language_id=null"]
    local, beam, local_out, beam_out = run_both(inputs, tmp_path)
    assert_same(local, beam, local_out, beam_out)
    assert local["inputs"]["reviews"]["dropped"] == {"missing_field": 2, "not_restaurant": 1}
    assert local["written"]["rows"] == 0 and pq.read_table(beam_out).num_rows == 0


def test_cli_runs_the_pipeline_and_prints_the_table(pair, tmp_path):
    """From the command line: Hydra's overrides in sys.argv must not reach Beam's option parser."""
    from tests.test_prepare_google_local import run_cli

    result = run_cli(*pair_inputs(pair), "grouping=language", *BEAM, f"output={tmp_path / 'groups'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "group_too_small=1" in result.stdout and "Discarding" not in result.stderr
    assert pq.read_table(tmp_path / "groups").num_rows == 3 and (tmp_path / "groups.report.json").exists()


def test_an_output_directory_holding_other_files_is_refused_and_kept(pair, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "precious.txt").write_text("not a shard")
    base = [*pair_inputs(pair), "source.language_id=null", *BEAM]
    for output, message in ((data, "holds other files than Parquet shards (e.g. precious.txt)"),
                            (".", "names no directory of its own"),
                            ("gs://my-bucket/", "is a bucket")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            prepare(compose_prepare([*base, f"output={output}"]))
    assert [p.name for p in data.iterdir()] == ["precious.txt"]


def test_a_trailing_slash_names_the_same_directory(pair, tmp_path):
    prepare(compose_prepare([*pair_inputs(pair), "source.language_id=null", *BEAM, f"output={tmp_path / 'groups'}/"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups", "groups.report.json"]
    assert [p.name for p in (tmp_path / "groups").iterdir()] == ["part-00000-of-00001.parquet"]


def test_object_store_publishing_replaces_every_old_shard(tmp_path):
    """The gs:// path (object by object, through Beam's filesystems), run on local paths."""
    from flavorfusion.engines.beam import publish_objects, remove_tree

    output, staging = tmp_path / "groups", tmp_path / ".groups.tmp-1"
    output.mkdir()
    staging.mkdir()
    for i in range(3):
        (output / f"part-0000{i}-of-00003.parquet").write_text("old")
    new = [staging / f"part-0000{i}-of-00002.parquet" for i in range(2)]
    for path in new:
        path.write_text("new")
    publish_objects([str(p) for p in new], str(output), str(staging))
    assert sorted(p.name for p in output.iterdir()) == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert {p.read_text() for p in output.iterdir()} == {"new"}
    remove_tree(str(staging))
    assert not staging.exists()


def test_a_worker_process_error_is_one_line_too(pair, tmp_path):
    """multi_processing (as on Dataflow) returns a worker's DataError as the text of another error."""
    broken = tmp_path / "reviews.json.gz"
    broken.write_bytes(pair["reviews"].read_bytes()[:-40])
    cfg = compose_prepare([f"source.reviews={broken}", f"source.meta={pair['meta']}", "source.language_id=null",
                           *BEAM, "engine.direct_running_mode=multi_processing", "engine.direct_num_workers=2",
                           f"output={tmp_path / 'out'}"])
    with pytest.raises(DataError, match=r"^cannot read .*reviews\.json\.gz: .*\[while running 'ReadLines'\]$"):
        prepare(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.json.gz"]


def test_odd_field_types_are_kept_or_nulled_alike(tmp_path):
    """Numbers and booleans as user_id are ids; a name or address that is not text is unknown."""
    (tmp_path / "meta.json").write_text(json.dumps({**meta("g1", ["Pizza restaurant"]), "name": 7, "address": ["x"]})
                                        + "\n")
    lines = [review(1.5, "g1", "A user id that is a float, long enough.", 1),
             review(True, "g1", "A user id that is a boolean, long enough.", 2),
             review(10**20, "g1", "A user id that is a big integer, long enough.", 3, name=["not", "text"])]
    (tmp_path / "reviews.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    inputs = [f"source.reviews={tmp_path / 'reviews.json'}", f"source.meta={tmp_path / 'meta.json'}",
              "source.language_id=null"]
    local, beam, local_out, beam_out = run_both(inputs, tmp_path)
    assert_same(local, beam, local_out, beam_out)
    row = pq.read_table(local_out).to_pylist()[0]
    assert row["n_reviews"] == 3 and row["name"] is None and row["address"] is None
