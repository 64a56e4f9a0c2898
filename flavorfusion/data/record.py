"""The review group: the one record every stage speaks, in memory (`ReviewGroup`) and on disk (`SCHEMA`).

`prepare` writes it (Parquet with `SCHEMA`, or the original code's CSV), the datamodule, `evaluate`, the
baselines and the benchmarks read it. A group is the reviews of one restaurant (and, after grouping, of one
cultural group of its reviewers) with its reference summaries, if any.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from flavorfusion.config.data import REVIEW_SEPARATOR

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("reviews", pa.list_(pa.string())),
        # the reference summary (null: unlabeled). Several references live in several columns of a table and
        # are mapped onto `ReviewGroup.summary` by the data config's column mapping.
        ("summary", pa.string()),
        ("business_id", pa.string()),
        ("name", pa.string()),
        ("address", pa.string()),
        ("group", pa.string()),  # cultural group label (language or surname origin)
        ("group_confidence", pa.float64()),
        ("n_reviews", pa.int32()),
        # provenance, beside each review: the text it was translated from (null if none) and its language
        ("originals", pa.list_(pa.string())),
        ("languages", pa.list_(pa.string())),
        ("summary_original", pa.string()),
    ]
)
REQUIRED = ("id", "reviews")
# what a group may carry besides its reviews and summary (the fields of `ReviewGroup` after `summary`)
OPTIONAL_FIELDS = ("business_id", "name", "address", "group", "group_confidence", "n_reviews")
# written by the original code's CSV: one cell of reviews joined by this separator
CSV_REVIEW_SEPARATOR = REVIEW_SEPARATOR
CSV_COLUMNS = ("id", "summary", "review_str")


@dataclass
class ReviewGroup:
    """One review group. `summary` holds its reference summaries: empty for unlabeled data, several for
    evaluation sets with several references (each is also a training target)."""

    id: str
    reviews: list[str]
    summary: list[str] = field(default_factory=list)
    business_id: str | None = None
    name: str | None = None
    address: str | None = None
    group: str | None = None
    group_confidence: float | None = None
    n_reviews: int | None = None

    @classmethod
    def from_row(cls, row: dict) -> ReviewGroup:
        """A row of a table in `SCHEMA` (or the datamodule's normalized rows); extra keys are ignored."""
        known = {k: row.get(k) for k in cls.__dataclass_fields__ if k in row}
        known["id"] = str(known["id"])
        known["reviews"] = list(known.get("reviews") or [])
        known["summary"] = texts(known.get("summary"))
        return cls(**known)

    def to_row(self) -> dict:
        return asdict(self)


def texts(value) -> list[str]:
    """A cell holding one text, several, or none (None, NaN, empty strings) -> the non-empty texts, stripped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def conform(table: pa.Table) -> pa.Table:
    """`table` in `SCHEMA`'s column order and types, with the optional columns it lacks added as nulls."""
    missing = [f for f in SCHEMA if f.name not in table.column_names]
    for f in missing:
        if f.name in REQUIRED:
            raise ValueError(f"a review-group table needs column {f.name!r}")
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(SCHEMA.names).cast(SCHEMA)


def to_table(groups: Iterable[ReviewGroup]) -> pa.Table:
    """Review groups -> an Arrow table in `SCHEMA` (the first reference as `summary`)."""
    rows = [g.to_row() for g in groups]
    for row in rows:
        row["summary"] = row["summary"][0] if row["summary"] else None
    return conform(pa.Table.from_pylist(rows)) if rows else SCHEMA.empty_table()
