"""Review groups from tables (CSV/TSV/JSONL/Parquet, local or gs://): column mapping onto the record
(`flavorfusion.data.record`) and the train/validation split."""

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import fsspec

from flavorfusion.data.record import CSV_REVIEW_SEPARATOR, OPTIONAL_FIELDS, ReviewGroup, texts
from flavorfusion.errors import DataError
from flavorfusion.io import expand_paths

log = logging.getLogger(__name__)

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


class GroupNormalizer:
    """Maps one raw row onto the record's `id, reviews, summary` plus `skip` (a batched `datasets.map`
    function; `summary` is the list of references).

    `reviews` and `summary` name one column or a list of columns. A string cell in a single reviews
    column is split on `review_separator` (the original code's `|||||`); a list cell is used as is.
    """

    def __init__(self, id_column: str, reviews: str | list[str], summary: str | list[str] | None,
                 review_separator: str = CSV_REVIEW_SEPARATOR, carried: Sequence[str] = ()):
        self.id_column = id_column
        self.review_columns = as_list(reviews)
        self.summary_columns = as_list(summary)
        self.review_separator = review_separator
        self.carried = list(carried)  # the record's optional fields, copied through as they are

    @property
    def required_columns(self) -> list[str]:
        return [self.id_column, *self.review_columns, *self.summary_columns]

    def reviews_of(self, row: dict) -> list[str]:
        if len(self.review_columns) == 1:
            cell = row[self.review_columns[0]]
            if isinstance(cell, str):
                return texts(cell.split(self.review_separator))
            return texts(cell)
        return [text for column in self.review_columns for text in texts(row[column])]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = {"id": [], "reviews": [], "summary": [], "skip": []}  # + the carried columns
        for i in range(len(batch[self.id_column])):
            row = {column: batch[column][i] for column in self.required_columns}
            reviews = self.reviews_of(row)
            summary = [t for column in self.summary_columns for t in texts(row[column])]
            skip = ""
            if not reviews:
                skip = SKIP_NO_REVIEWS
            elif self.summary_columns and not summary:
                skip = SKIP_NO_SUMMARY
            out["id"].append(str(row[self.id_column]))
            out["reviews"].append(reviews)
            out["summary"].append(summary)
            out["skip"].append(skip)
        for column in self.carried:
            out[column] = batch[column]
        return out


def in_validation(group_id: str, seed: int, test_ratio: float) -> bool:
    """Deterministic split by a hash of the id: needs no dataset size, works on streams, and rows that
    share an id land on the same side."""
    digest = hashlib.blake2b(f"{seed}:{group_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < test_ratio


@dataclass(frozen=True)
class ReviewTable:
    """A table of review groups and how to read it: `data.path`, `data.columns` and the reading keys of a data
    config. `rows()` gives normalized rows (HF datasets, map-style or streaming); `groups()` the records."""

    path: str | list[str]
    columns: dict
    review_separator: str = CSV_REVIEW_SEPARATOR
    format: str | None = None
    streaming: bool = False
    subset: int | None = None
    storage_options: dict | None = None
    num_proc: int | None = None

    @classmethod
    def from_config(cls, data) -> "ReviewTable":
        """From a data config (`conf/data/*.yaml`) or the datamodule's hyperparameters."""
        keys = cls.__dataclass_fields__
        return cls(**{k: data[k] for k in keys if k in data})

    def normalizer(self, present: Sequence[str] = ()) -> GroupNormalizer:
        """The column mapping; the record's optional fields (business_id, name, group, ...) that the table has
        under their own names are carried through."""
        mapped = {self.columns["id"], *as_list(self.columns["reviews"]), *as_list(self.columns.get("summary"))}
        carried = [c for c in OPTIONAL_FIELDS if c in present and c not in mapped]
        return GroupNormalizer(self.columns["id"], self.columns["reviews"], self.columns.get("summary"),
                               self.review_separator, carried)

    def checked_files(self) -> tuple[list[str], str, list[str]]:
        """(the files `path` matches, their format, the first file's columns), every file checked for the mapped
        columns: a pattern matching nothing or a missing column fails here, naming the file."""
        files = expand_paths(self.path)
        fmt = self.format or infer_format(files[0])
        present = read_columns(files[0], fmt)
        check_columns(files, fmt, self.normalizer(present).required_columns)
        return files, fmt, present

    def rows(self):
        """Raw table -> normalized rows (`id, reviews, summary, skip`)."""
        import datasets

        files, fmt, present = self.checked_files()
        normalizer = self.normalizer(present)
        builder, kwargs = ("csv", {"sep": "\t"}) if fmt == "tsv" else (fmt, {})
        if builder == "csv":
            # every column a string: an empty summary is "", not NaN, and ids keep leading zeros
            kwargs["keep_default_na"] = False
            kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in present})
        # reading and normalizing a table takes seconds: its progress bars tell a user nothing to act on
        with quiet_progress(datasets):
            raw = datasets.load_dataset(builder, data_files=files, split="train", streaming=self.streaming,
                                        storage_options=self.storage_options, **kwargs)
            if self.subset:
                raw = raw.take(self.subset) if self.streaming else raw.select(range(min(self.subset, len(raw))))
            map_kwargs = {} if self.streaming else {"num_proc": self.num_proc}
            return raw.map(normalizer, batched=True, remove_columns=raw.column_names, **map_kwargs)

    def records(self, skipped: Counter) -> Iterator[ReviewGroup]:
        """Every usable group as a record, as the rows stream; skipped rows are counted by reason in `skipped`."""
        for row in self.rows():
            if row["skip"]:
                skipped[row["skip"]] += 1
            else:
                yield ReviewGroup.from_row(row)

    def groups(self) -> tuple[list[ReviewGroup], Counter]:
        """Every usable group as a record, and the count of skipped rows by reason."""
        skipped: Counter = Counter()
        groups = list(self.records(skipped))
        if skipped:
            log.warning("skipped %d review groups: %s", sum(skipped.values()), dict(skipped))
        return groups, skipped


@contextlib.contextmanager
def quiet_progress(datasets) -> Iterator[None]:
    """datasets' progress bars off within the block (as they were after)."""
    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()
