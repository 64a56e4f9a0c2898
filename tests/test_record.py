"""The review-group record: one dataclass and one Arrow schema, written by every source, read by every stage."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flavorfusion.data.record import SCHEMA, ReviewGroup, conform, texts, to_table
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.data.writer import open_writer


def test_texts_normalizes_one_several_or_no_summary():
    assert texts(" good ") == ["good"]
    assert texts(["a", "", None, " b "]) == ["a", "b"]
    assert texts(None) == texts(float("nan")) == texts("  ") == []


def test_table_round_trip_keeps_every_field(tmp_path):
    groups = [ReviewGroup("r1:es", ["buenos tacos", "slow"], ["Tacos are good."], business_id="r1", name="Uno",
                          address="1 Main St", group="es", group_confidence=0.9, n_reviews=2),
              ReviewGroup("r2:en", ["ok"])]
    table = to_table(groups)
    assert table.schema.equals(SCHEMA)
    path = tmp_path / "groups.parquet"
    with open_writer(str(path), "parquet") as writer:
        writer.write(table)
    assert pq.read_schema(path).remove_metadata().equals(SCHEMA)
    back = [ReviewGroup.from_row(row) for row in pq.read_table(path).to_pylist()]
    assert back == groups


def test_conform_adds_optional_columns_and_refuses_a_table_without_reviews():
    table = conform(pa.table({"summary": ["s"], "id": ["a"], "reviews": [["r"]]}))
    assert table.column_names == SCHEMA.names and table.column("group").to_pylist() == [None]
    with pytest.raises(ValueError, match="needs column 'reviews'"):
        conform(pa.table({"id": ["a"]}))


def test_prepared_file_reads_back_as_records(tmp_path):
    path = tmp_path / "groups.parquet"
    with open_writer(str(path), "parquet") as writer:
        writer.write(to_table([ReviewGroup("a", ["r1", "r2"], ["s"], group="en"), ReviewGroup("b", [], ["s"])]))
    groups, skipped = ReviewTable(str(path), {"id": "id", "reviews": "reviews", "summary": "summary"}).groups()
    assert [(g.id, g.reviews, g.summary) for g in groups] == [("a", ["r1", "r2"], ["s"])]
    assert skipped == {"empty_reviews": 1}


def test_original_csv_writes_and_reads_the_same_groups(tmp_path):
    path = tmp_path / "groups.csv"
    groups = [ReviewGroup("a", ["great ramen", "slow service"], ["Good ramen."])]
    with open_writer(str(path), "csv") as writer:
        writer.write(to_table(groups))
    assert path.read_text().splitlines()[0] == "id,summary,review_str"
    back, _ = ReviewTable(str(path), {"id": "id", "reviews": "review_str", "summary": "summary"}).groups()
    assert back == groups
