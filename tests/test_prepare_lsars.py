"""prepare on a synthetic LSARS file: counts, chunks, translation through a fake, cache, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from flavorfusion.data.record import SCHEMA
from flavorfusion.data.translate import CachedTranslator, GoogleTranslator
from flavorfusion.errors import ConfigError
from flavorfusion.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


class FakeTranslator(CachedTranslator):
    """Prefixes `EN:`; counts backend calls across instances (prepare builds a new one per run)."""

    calls: list[list[str]] = []

    def _translate_batch(self, texts: list[str]) -> list[str]:
        FakeTranslator.calls.append(list(texts))
        return [f"EN:{t}" for t in texts]


FAKE = f"{FakeTranslator.__module__}.{FakeTranslator.__qualname__}"


def item(item_id, summary: list[str], reviews: list[list[str]]) -> str:
    return json.dumps(
        {"item_id": item_id, "hq_tokens": summary, "lq_tokens_list": reviews}, ensure_ascii=False
    )


@pytest.fixture
def lsars(tmp_path) -> Path:
    lines = [
        item(1, ["质量", "很", "好"], [["手机", "很", "好用"], ["电池", "耐用"], ["好用"]]),  # kept
        item(2, ["物流", "快"], [["物流", "很", "快"], ["包装", "好"]]),  # kept
        '{"item_id": 3, "hq_tokens": ["坏"',  # malformed_json
        json.dumps({"item_id": 4, "lq_tokens_list": [["没有", "摘要"]]}),  # missing_field
        item(5, ["空"], [[], [""]]),  # no_reviews
        item(1, ["重复"], [["重复", "商品"]]),  # duplicate
        "",  # blank_line
        item(
            6, ["价格", "便宜", "实惠"], [["价格", "便宜"], ["好用"]]
        ),  # kept ("好用" repeats item 1's review)
    ]
    path = tmp_path / "lsars.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def compose_prepare(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="prepare", overrides=["progress=false", "source=lsars", *overrides])


def test_counts_and_untranslated_output(lsars, tmp_path):
    output = tmp_path / "lsars.parquet"
    report = prepare(compose_prepare([f"source.path={lsars}", f"output={output}", "source.chunk_size=2"]))
    items = report["inputs"]["items"]
    assert items["lines"] == 8 and items["kept"] == 3
    assert items["dropped"] == {
        "blank_line": 1,
        "duplicate": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "no_reviews": 1,
    }
    assert pq.read_schema(output).remove_metadata().equals(SCHEMA)  # the one review-group schema
    rows = pq.read_table(output).to_pylist()
    assert [r["id"] for r in rows] == ["1", "2", "6"]
    assert rows[0]["reviews"] == ["手机很好用", "电池耐用", "好用"] and rows[0]["summary"] == "质量很好"
    assert rows[0]["originals"] is None
    assert report["written"] == {"rows": 3, "reviews": 7}


def test_start_and_stop_line_select_a_slice(lsars, tmp_path):
    output = tmp_path / "slice.parquet"
    cfg = compose_prepare(
        [f"source.path={lsars}", f"output={output}", "source.start_line=1", "source.stop_line=3"]
    )
    report = prepare(cfg)
    items = report["inputs"]["items"]
    assert items["lines"] == 3  # lines 0..2 read; reading stopped at stop_line
    assert items["dropped"] == {"before_start_line": 1, "malformed_json": 1}
    assert pq.read_table(output).column("id").to_pylist() == ["2"]


def test_translation_is_cached_across_runs(lsars, tmp_path):
    FakeTranslator.calls.clear()
    overrides = [
        f"source.path={lsars}",
        f"translate._target_={FAKE}",
        f"+translate.cache_path={tmp_path / 'cache.sqlite'}",
        "+translate.batch_size=4",
    ]
    first = prepare(compose_prepare([*overrides, f"output={tmp_path / 'a.parquet'}"]))
    # 7 review texts less one repeat, plus 3 summaries = 9 distinct texts, each sent once, in batches of at most 4
    sent = [t for call in FakeTranslator.calls for t in call]
    assert len(sent) == len(set(sent)) == 9
    assert all(len(call) <= 4 for call in FakeTranslator.calls)
    assert first["translation"]["cache_hits"] == 0

    FakeTranslator.calls.clear()
    second = prepare(compose_prepare([*overrides, f"output={tmp_path / 'b.parquet'}"]))
    assert FakeTranslator.calls == []  # the cache answered everything
    assert second["translation"]["cache_hits"] == 9 and second["translation"].get("requests", 0) == 0

    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)
    row = a.to_pylist()[0]
    assert row["reviews"] == ["EN:手机很好用", "EN:电池耐用", "EN:好用"]
    assert row["summary"] == "EN:质量很好" and row["summary_original"] == "质量很好"
    assert row["originals"] == ["手机很好用", "电池耐用", "好用"]


def test_dry_run_counts_characters_and_calls_nothing(lsars, tmp_path, capsys):
    FakeTranslator.calls.clear()
    report = prepare(
        compose_prepare(
            [
                f"source.path={lsars}",
                f"translate._target_={FAKE}",
                f"+translate.cache_path={tmp_path / 'cache.sqlite'}",
                "+translate.dry_run=true",
                "+translate.price_per_million_chars=20",
            ]
        )
    )
    texts = {
        "手机很好用",
        "电池耐用",
        "好用",
        "物流很快",
        "包装好",
        "价格便宜",
        "质量很好",
        "物流快",
        "价格便宜实惠",
    }
    chars = sum(len(t) for t in texts)
    assert FakeTranslator.calls == []
    assert report["translation"]["pending_chars"] == chars
    assert report["translation"]["pending_texts"] == len(texts)
    assert report["translation"]["estimated_cost_usd"] == round(chars * 20 / 1e6, 4)
    out = capsys.readouterr().out
    assert f"dry run: {chars} characters in {len(texts)} texts" in out
    assert "Nothing was translated or written" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite", "lsars.jsonl"]


def test_google_translator_dry_run_needs_no_credentials(lsars, tmp_path, capsys):
    report = prepare(
        compose_prepare(
            [
                f"source.path={lsars}",
                "translate=google",
                "translate.dry_run=true",
                f"translate.cache_path={tmp_path / 'cache.sqlite'}",
            ]
        )
    )
    assert report["translation"]["name"] == "GoogleTranslator" and report["translation"]["pending_texts"] == 9
    assert "estimated cost $0.00" in capsys.readouterr().out


def test_grouping_other_than_none_is_refused(lsars, tmp_path):
    with pytest.raises(ConfigError, match="grouping=language"):
        prepare(
            compose_prepare([f"source.path={lsars}", f"output={tmp_path / 'x.parquet'}", "grouping=language"])
        )
    assert not (tmp_path / "x.parquet").exists()


# -- the Google backend behind a fake client: batching and retry on transient errors -------------
class FakeResponse:
    def __init__(self, texts):
        self.translations = [type("T", (), {"translated_text": f"EN:{t}"})() for t in texts]


class FlakyClient:
    """Fails the first call with 503, then translates."""

    def __init__(self):
        self.requests: list[dict] = []

    def translate_text(self, request, timeout):
        from google.api_core.exceptions import ServiceUnavailable

        self.requests.append(request)
        if len(self.requests) == 1:
            raise ServiceUnavailable("try again")
        return FakeResponse(request["contents"])


def test_google_translator_batches_and_retries(tmp_path):
    pytest.importorskip("google.api_core")
    client = FlakyClient()
    translator = GoogleTranslator(
        project_id="demo",
        cache_path=str(tmp_path / "c.sqlite"),
        batch_size=2,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )
    translator._make_client = lambda: client
    assert translator.translate(["一", "二", "三", "一"]) == ["EN:一", "EN:二", "EN:三", "EN:一"]
    # one failed + one retried request for the first batch, then the second batch
    assert [r["contents"] for r in client.requests] == [["一", "二"], ["一", "二"], ["三"]]
    assert client.requests[0]["parent"] == "projects/demo/locations/global"
    assert client.requests[0]["target_language_code"] == "en"
    translator.close()


def test_remote_input_and_output_through_fsspec(lsars, tmp_path):
    """Non-local URLs take the fsspec path (as gs:// does); fsspec's in-memory filesystem stands in."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/raw/lsars.jsonl", lsars.read_bytes())
    report = prepare(
        compose_prepare(["source.path=memory://bucket/raw/*.jsonl", "output=memory://bucket/groups/lsars.parquet"])
    )
    assert report["inputs"]["items"]["kept"] == 3
    with fs.open("/bucket/groups/lsars.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 3
    assert fs.exists("/bucket/groups/lsars.report.json")
    fs.rm("/bucket", recursive=True)
