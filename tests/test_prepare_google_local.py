"""prepare on a synthetic Google Local pair written here: exact report counts, groups, outputs, bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from flavorfusion.data.record import SCHEMA
from flavorfusion.data.sources.google_local import split_translation
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
# a few languages keep lingua's model loading short in tests
TEST_LANGUAGES = "source.language_id.languages=[en,es,fr,de]"

ES_ORIGINALS = [
    "Los tacos estaban excelentes y la salsa era muy fresca, volveremos pronto.",
    "La comida es deliciosa y el servicio es rápido, me encanta este lugar.",
    "Muy buen ambiente, los precios son justos y la atención es amable.",
    "Las enchiladas de mole son las mejores que he comido en esta ciudad.",
]
FR_ORIGINAL = "La pizza était délicieuse et le service très aimable, je recommande vivement."


def translated(english: str, original: str) -> str:
    return f"(Translated by Google) {english}\n\n(Original)\n{original}"


def review(user: str, gmap_id: str, text, time: int, name: str = "Some Reviewer") -> dict:
    return {
        "user_id": user,
        "name": name,
        "time": time,
        "rating": 5,
        "text": text,
        "pics": None,
        "resp": None,
        "gmap_id": gmap_id,
    }


def meta(gmap_id: str, category, name: str = "A Place") -> dict:
    return {"name": name, "address": f"{name}, 1 Main St", "gmap_id": gmap_id, "category": category}


def write_gz_pair(directory: Path, reviews: list[dict], metas: list[dict]) -> tuple[str, str]:
    """`reviews.json.gz` and `meta.json.gz` in `directory`, one JSON object per line -> (reviews path, meta path)."""
    paths = []
    for name, rows in (("reviews.json.gz", reviews), ("meta.json.gz", metas)):
        path = directory / name
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        paths.append(str(path))
    return paths[0], paths[1]


# surname grouping: three Hispanic-majority census surnames, then a below-threshold share (Smith,
# 68% white), a single-word name and a surname missing from the census table
EN_NAMES = ["Ana Garcia", "Luis Hernandez", "Rosa Lopez", "John Smith", "shwetha", "Jim Earlam"]
ES_NAMES = ["María Fernández", "José Martínez", "Carmen Rodríguez", "Jorge Sánchez"]


def write_pair(tmp_path: Path) -> dict[str, Path]:
    """The synthetic pair. Expected fate of each line is in the comment beside it."""
    meta_lines = [
        json.dumps(meta("g_r1", ["Mexican restaurant", "Bar"], "Taqueria Uno")),  # kept
        json.dumps(meta("g_r2", ["Pizza restaurant"], "Pizza Due")),  # kept
        json.dumps(meta("g_shop", ["Gift shop"], "Gifts")),  # not_restaurant
        json.dumps(meta("g_null", None, "No Category")),  # null_category
        '{"name": "broken", "gmap_id": "g_x"',  # malformed_json
        json.dumps({"name": "no id", "category": ["Pizza restaurant"]}),  # missing_field
        json.dumps(meta("g_r1", ["Mexican restaurant"], "Taqueria Uno again")),  # duplicate
        "",  # blank_line
    ]
    meta_path = tmp_path / "meta.json"
    meta_path.write_text("\n".join(meta_lines) + "\n", encoding="utf-8")

    t = 1_600_000_000_000
    lines: list[bytes] = []

    def add(record) -> None:
        lines.append(json.dumps(record).encode() if isinstance(record, dict) else record)

    # restaurant 1: 6 English + 4 Spanish kept; 4 dropped
    for i, name in enumerate(EN_NAMES):
        add(
            review(
                f"u{i}", "g_r1", f"English review number {i}: great tacos and friendly staff.", t + i, name
            )
        )
    for i, original in enumerate(ES_ORIGINALS):
        english = f"Spanish review {i} in English: the food was excellent."
        add(review(f"s{i}", "g_r1", translated(english, original), t + 10 + i, ES_NAMES[i]))
    add(review("u0", "g_r1", "English review number 0: great tacos and friendly staff.", t + 20))  # duplicate
    add(review("u7", "g_r1", None, t + 21))  # null_text
    add(review("u8", "g_r1", "Good", t + 22))  # too_short
    add(review("u9", "g_r1", "x" * 6000, t + 23))  # too_long
    # restaurant 2: 3 English + 1 French (a group of 1 under grouping=language)
    for i in range(3):
        add(review(f"p{i}", "g_r2", f"Pizza review {i}: thin crust, good sauce, quick service.", t + 30 + i))
    add(
        review(
            "f0",
            "g_r2",
            translated("The pizza was delicious and the service very kind.", FR_ORIGINAL),
            t + 40,
        )
    )
    # not kept, whatever the grouping
    add(review("o1", "g_shop", "A nice gift shop with many things to buy.", t))  # not_restaurant
    add(review("o2", "g_shop", "Another review of the gift shop, quite long.", t))  # not_restaurant
    add(review("o3", "g_null", "A business whose category is null in meta.", t))  # not_restaurant
    add(review("o4", "g_nowhere", "A business missing from the metadata file.", t))  # unknown_business
    add(
        {"time": t, "text": "No user_id, but a gift shop first of all.", "gmap_id": "g_shop"}
    )  # not_restaurant
    add(b'{"user_id": "o5", "text": "cut off')  # malformed_json
    add(b'{"user_id": "o6", "text": "\xff\xfe not utf-8", "gmap_id": "g_r1", "time": 1}')  # malformed_json
    add(b"[1, 2, 3]")  # malformed_json (not an object)
    add({"user_id": "o7", "time": t, "text": "no gmap_id on this line at all"})  # missing_field
    add(b"   ")  # blank_line
    reviews_path = tmp_path / "reviews.json.gz"
    with gzip.open(reviews_path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    empty_path = tmp_path / "empty.json"
    empty_path.write_bytes(b"")
    return {"meta": meta_path, "reviews": reviews_path, "empty": empty_path}


def compose_prepare(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="prepare", overrides=["progress=false", *overrides])


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    return write_pair(tmp_path_factory.mktemp("google_local"))


def base_overrides(pair, output: Path) -> list[str]:
    return [
        "source=google_local",
        f"source.reviews=[{pair['reviews']},{pair['empty']}]",
        f"source.meta={pair['meta']}",
        f"output={output}",
        TEST_LANGUAGES,
    ]


META_EXPECTED = {
    "lines": 8,
    "kept": 2,
    "dropped": {
        "blank_line": 1,
        "duplicate": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "not_restaurant": 1,
        "null_category": 1,
    },
}
REVIEWS_DROPPED_ANY_GROUPING = {
    "blank_line": 1,
    "duplicate": 1,
    "malformed_json": 3,
    "missing_field": 1,
    "not_restaurant": 4,
    "null_text": 1,
    "too_long": 1,
    "too_short": 1,
    "unknown_business": 1,
}


def test_language_grouping_counts_and_spanish_group(pair, tmp_path):
    output = tmp_path / "groups.parquet"
    report = prepare(compose_prepare([*base_overrides(pair, output), "grouping=language"]))

    meta_counts = report["inputs"]["meta"]
    assert {k: meta_counts[k] for k in ("lines", "kept", "dropped")} == META_EXPECTED
    reviews = report["inputs"]["reviews"]
    assert reviews["lines"] == 28
    assert reviews["kept"] == 13
    assert reviews["dropped"] == {**REVIEWS_DROPPED_ANY_GROUPING, "group_too_small": 1}
    assert reviews["lines"] == reviews["kept"] + sum(reviews["dropped"].values())
    assert report["written"]["rows"] == 3 and report["written"]["reviews"] == 13
    assert report["written"]["groups_too_small"] == 1

    assert pq.read_schema(output).remove_metadata().equals(SCHEMA)  # the one review-group schema
    rows = {r["id"]: r for r in pq.read_table(output).to_pylist()}
    assert set(rows) == {"g_r1:en", "g_r1:es", "g_r2:en"}
    spanish = rows["g_r1:es"]
    assert spanish["group"] == "es" and spanish["n_reviews"] == 4
    assert spanish["business_id"] == "g_r1" and spanish["name"] == "Taqueria Uno"
    # English text as the review, the original and its language beside it; newest first
    assert spanish["reviews"][0] == "Spanish review 3 in English: the food was excellent."
    assert spanish["originals"] == ES_ORIGINALS[::-1]
    assert spanish["languages"] == ["es"] * 4
    assert 0.5 <= spanish["group_confidence"] <= 1.0
    english = rows["g_r1:en"]
    assert english["n_reviews"] == 6 and english["languages"] == ["en"] * 6
    assert english["originals"] == [None] * 6 and english["group_confidence"] is None
    assert english["summary"] is None
    # the report sits beside the output and says the same
    saved = json.loads((tmp_path / "groups.report.json").read_text())
    assert saved["inputs"] == report["inputs"]


def test_no_grouping_one_group_per_business(pair, tmp_path):
    output = tmp_path / "groups.parquet"
    report = prepare(compose_prepare(base_overrides(pair, output)))
    reviews = report["inputs"]["reviews"]
    assert reviews["kept"] == 14 and reviews["dropped"] == REVIEWS_DROPPED_ANY_GROUPING
    table = pq.read_table(output)
    assert table.column("id").to_pylist() == ["g_r1:all", "g_r2:all"]
    assert table.column("n_reviews").to_pylist() == [10, 4]
    r2 = table.to_pylist()[1]
    assert r2["languages"] == ["fr", "en", "en", "en"]  # identified even without language grouping
    assert r2["originals"][0] == FR_ORIGINAL


def test_cap_keeps_most_recent_and_csv_output(pair, tmp_path):
    output = tmp_path / "groups.csv"
    report = prepare(
        compose_prepare(
            [*base_overrides(pair, output), "source.max_reviews_per_business=5", "source.language_id=null"]
        )
    )
    reviews = report["inputs"]["reviews"]
    assert reviews["dropped"]["over_cap"] == 5  # restaurant 1 had 10 candidates
    assert reviews["kept"] == 9
    assert reviews["lines"] == reviews["kept"] + sum(reviews["dropped"].values())
    header, first, *_ = output.read_text(encoding="utf-8").splitlines()
    assert header == "id,summary,review_str"
    assert first.startswith("g_r1:all,,")
    texts = first.split(",", 2)[2].strip('"').split("|||||")
    # the 5 most recent of restaurant 1: the 4 Spanish reviews and the last English one
    assert len(texts) == 5 and texts[0].startswith("Spanish review 3")
    assert texts[-1].startswith("English review number 5")


def test_surname_grouping_abstains_into_unknown(pair, tmp_path):
    pytest.importorskip("ethnicolr")
    output = tmp_path / "groups.parquet"
    overrides = [*base_overrides(pair, output), "grouping=surname", "grouping.min_group_size=1"]
    report = prepare(compose_prepare([*overrides, "source.language_id=null"]))
    rows = {r["id"]: r for r in pq.read_table(output).to_pylist()}
    assert set(rows) == {"g_r1:hispanic", "g_r1:unknown", "g_r2:unknown"}
    hispanic = rows["g_r1:hispanic"]
    assert hispanic["n_reviews"] == 7  # Garcia, Hernandez, Lopez and the four Spanish-language reviewers
    assert 0.7 <= hispanic["group_confidence"] <= 1.0
    # a single-word name, a surname not in the census table and a below-threshold share abstain
    assert rows["g_r1:unknown"]["n_reviews"] == 3
    assert rows["g_r1:unknown"]["group_confidence"] is None
    details = report["grouping"]
    assert details["abstained_by_reason"] == {
        "no_surname": 1,  # "shwetha"
        "below_min_probability": 1,  # Smith
        "out_of_dictionary": 5,  # Earlam, and "Some Reviewer" at restaurant 2
    }
    assert details["abstained"] == 7 and details["min_probability"] == 0.7
    assert report["inputs"]["reviews"]["kept"] == 14


def test_fast_path_and_full_parse_count_alike(pair, tmp_path):
    """Review lines written with other JSON spacing miss the byte-scan fast path and are parsed in
    full; the report must not change."""
    compact = tmp_path / "compact.json"
    with gzip.open(pair["reviews"], "rb") as src, open(compact, "wb") as dst:
        for line in src:
            try:
                dst.write(json.dumps(json.loads(line), separators=(",", ":")).encode() + b"\n")
            except ValueError:  # broken lines stay as they are
                dst.write(line)
    overrides = ["source.language_id=null", f"source.meta={pair['meta']}"]
    fast = prepare(
        compose_prepare([*overrides, f"source.reviews={pair['reviews']}", f"output={tmp_path / 'a.parquet'}"])
    )
    full = prepare(
        compose_prepare([*overrides, f"source.reviews={compact}", f"output={tmp_path / 'b.parquet'}"])
    )
    assert fast["inputs"]["reviews"]["dropped"] == full["inputs"]["reviews"]["dropped"]
    assert fast["inputs"]["reviews"]["kept"] == full["inputs"]["reviews"]["kept"] == 14
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_split_translation_both_orders():
    assert split_translation("plain text") == ("plain text", None)
    assert split_translation(translated("Very good", "Muy bueno")) == ("Very good", "Muy bueno")
    assert split_translation("(Original)\nMuy bueno\n\n(Translated by Google)\nVery good") == (
        "Very good",
        "Muy bueno",
    )


def test_missing_input_is_a_data_error_and_leaves_no_output(pair, tmp_path):
    output = tmp_path / "groups.parquet"
    cfg = compose_prepare(
        [f"source.reviews={tmp_path / 'nope.json'}", f"source.meta={pair['meta']}", f"output={output}"]
    )
    with pytest.raises(DataError, match="nope.json"):
        prepare(cfg)
    assert list(tmp_path.iterdir()) == []


def test_translate_is_refused_for_google_local(pair, tmp_path):
    cfg = compose_prepare([*base_overrides(pair, tmp_path / "x.parquet"), "translate=google"])
    with pytest.raises(ConfigError, match="translate"):
        prepare(cfg)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_an_error_before_any_work(pair, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a directory cannot be created under a regular file, even by root
    with pytest.raises(DataError, match="cannot create output directory"):
        prepare(compose_prepare(base_overrides(pair, blocker / "sub" / "groups.parquet")))
    with pytest.raises(ConfigError, match="is a directory"):
        prepare(compose_prepare(base_overrides(pair, tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "flavorfusion.prepare", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_one_line_errors_and_no_partial_output(pair, tmp_path):
    # output under a regular file: its directory cannot be created
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(
        f"source.reviews={pair['reviews']}",
        f"source.meta={pair['meta']}",
        f"output={blocker / 'sub' / 'groups.parquet'}",
        "source.language_id=null",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot create output directory" in errors[0]
    assert "Traceback" not in result.stderr

    result = run_cli(
        f"source.reviews={tmp_path / 'missing.json.gz'}",
        f"source.meta={pair['meta']}",
        "output=out.parquet",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no file matches")
    assert not (tmp_path / "out.parquet").exists()


def test_cli_end_to_end_prints_table(pair, tmp_path):
    result = run_cli(*base_overrides(pair, tmp_path / "g.parquet"), "grouping=language", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reviews" in result.stdout and "group_too_small=1" in result.stdout
    assert (tmp_path / "g.parquet").exists() and (tmp_path / "g.report.json").exists()
