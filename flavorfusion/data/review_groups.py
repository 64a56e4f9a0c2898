"""Review groups from tables: reading CSV/TSV/JSONL/Parquet, column mapping, split and augmentation.

A review group is one record: `id`, `reviews` (list of strings) and `references` (the summaries, a
list: several references are used by evaluation, and each is a training target).
"""

import csv
import hashlib
import io
import json
import math
import os
import random
from collections.abc import Sequence

import fsspec

from flavorfusion.errors import DataError

# file suffix -> HF datasets builder
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SKIP_NO_SUMMARY = "no_summary"
SKIP_NO_REVIEWS = "empty_reviews"


def infer_format(path: str) -> str:
    stem = path[: -len(".gz")] if path.endswith(".gz") else path
    suffix = os.path.splitext(stem)[1].lower()
    if suffix not in FORMATS:
        raise DataError(f"cannot tell the format of {path!r}: set data.format to one of csv, tsv, json, parquet")
    return FORMATS[suffix]


def read_columns(path: str, fmt: str) -> list[str]:
    """Column names of one file, read from its header (or first record) without loading it."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as f:
            return list(pq.read_schema(f).names)
    with fsspec.open(path, "rt", compression="infer", encoding="utf-8", errors="replace") as f:
        if fmt in ("csv", "tsv"):
            return next(csv.reader(io.StringIO(f.readline()), delimiter="\t" if fmt == "tsv" else ","), [])
        for line in f:
            if line.strip():
                try:
                    return list(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: first record is not JSON ({err.msg})") from None
    return []


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def check_columns(files: Sequence[str], fmt: str, required: Sequence[str]) -> None:
    for path in files:
        present = set(read_columns(path, fmt))
        for column in required:
            if column not in present:
                raise DataError(f"column {column!r} not found in {path} (columns: {', '.join(sorted(present))})")


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _texts(value) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v.strip() for v in as_list(value) if _is_text(v)]


class GroupNormalizer:
    """Maps one raw row onto `id, reviews, references, skip` (a batched `datasets.map` function).

    `reviews` and `summary` name one column or a list of columns. A string cell in a single reviews
    column is split on `review_separator` (the original code's `|||||`); a list cell is used as is.
    """

    def __init__(self, id_column: str, reviews: str | list[str], summary: str | list[str] | None,
                 review_separator: str = "|||||"):
        self.id_column = id_column
        self.review_columns = as_list(reviews)
        self.summary_columns = as_list(summary)
        self.review_separator = review_separator

    @property
    def required_columns(self) -> list[str]:
        return [self.id_column, *self.review_columns, *self.summary_columns]

    def reviews_of(self, row: dict) -> list[str]:
        if len(self.review_columns) == 1:
            cell = row[self.review_columns[0]]
            if isinstance(cell, str):
                return _texts(cell.split(self.review_separator))
            return _texts(cell)
        return [text for column in self.review_columns for text in _texts(row[column])]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = {"id": [], "reviews": [], "references": [], "skip": []}
        for i in range(len(batch[self.id_column])):
            row = {column: batch[column][i] for column in self.required_columns}
            reviews = self.reviews_of(row)
            references = [t for column in self.summary_columns for t in _texts(row[column])]
            skip = ""
            if not reviews:
                skip = SKIP_NO_REVIEWS
            elif self.summary_columns and not references:
                skip = SKIP_NO_SUMMARY
            out["id"].append(str(row[self.id_column]))
            out["reviews"].append(reviews)
            out["references"].append(references)
            out["skip"].append(skip)
        return out


def in_validation(group_id: str, seed: int, test_ratio: float) -> bool:
    """Deterministic split by a hash of the id: needs no dataset size, works on streams, and rows that
    share an id land on the same side."""
    digest = hashlib.blake2b(f"{seed}:{group_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < test_ratio


def augment(reviews: list[str], k_top_longest: int | None, max_docs_per_review: int,
            rng: random.Random) -> list[list[str]]:
    """The original code's augmentation: keep the k longest reviews, shuffle them, and cut them into
    chunks of `max_docs_per_review` that become separate examples sharing the summary."""
    kept = sorted(reviews, key=len, reverse=True)[:k_top_longest]
    rng.shuffle(kept)
    return [kept[i : i + max_docs_per_review] for i in range(0, len(kept), max_docs_per_review)]
