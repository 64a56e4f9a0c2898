"""Writing review groups (`flavorfusion.data.record.SCHEMA`) to Parquet or the original code's CSV, local or
gs://, without ever leaving a partial file at the output path."""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flavorfusion.data.record import CSV_COLUMNS, CSV_REVIEW_SEPARATOR, SCHEMA, conform
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output

OUTPUT_FORMATS = ("parquet", "csv")


def output_format(output: str, fmt: str) -> str:
    """`auto` picks csv for a `.csv` output and parquet otherwise."""
    if fmt == "auto":
        return "csv" if output.lower().endswith(".csv") else "parquet"
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"format={fmt!r} is not one of auto, {', '.join(OUTPUT_FORMATS)}")
    return fmt


@contextlib.contextmanager
def output_file(path: str) -> Iterator[str]:
    """A local temporary path that becomes `path` only when the block succeeds.

    Local outputs are renamed into place (io.atomic_output); remote ones (gs://...) are uploaded once
    complete, and an object store never shows a half-uploaded object.
    """
    protocol = fsspec.utils.get_protocol(path)
    if protocol in ("file", "local"):
        with atomic_output(path) as tmp:
            yield tmp
        return
    fs, remote = fsspec.core.url_to_fs(path)
    with tempfile.TemporaryDirectory(prefix="flavorfusion-") as tmpdir:
        tmp = os.path.join(tmpdir, os.path.basename(remote))
        yield tmp
        try:
            fs.put_file(tmp, remote)
        except Exception as err:  # credentials, bucket, permissions: one line for the user
            raise DataError(f"cannot write {path}: {err}") from None


class ReviewGroupWriter:
    """Writes batches of review groups to a temporary file; `close()` leaves a complete file.

    Parquet keeps every column; CSV keeps the original code's three columns `id, summary, review_str`,
    the reviews joined by `|||||`.
    """

    def __init__(self, path: str, fmt: str):
        self.path, self.format = path, fmt
        self.rows = 0
        self.reviews = 0
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        else:
            self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by close())
            self._csv = csv.writer(self._file)
            self._csv.writerow(CSV_COLUMNS)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = conform(table)
        self.rows += table.num_rows
        self.reviews += pc.sum(pc.list_value_length(table.column("reviews"))).as_py() or 0
        if self.format == "parquet":
            self._parquet.write_table(table)
            return
        ids, summaries, reviews = (table.column(c).to_pylist() for c in ("id", "summary", "reviews"))
        self._csv.writerows(
            (i, "" if s is None else s, CSV_REVIEW_SEPARATOR.join(r))
            for i, s, r in zip(ids, summaries, reviews, strict=True)
        )

    def close(self) -> None:
        if self.format == "parquet":
            self._parquet.close()
        else:
            self._file.close()


class DiscardWriter(ReviewGroupWriter):
    """Counts what would be written (translate.dry_run) and writes nothing."""

    def __init__(self):
        self.path, self.format = None, None
        self.rows = 0
        self.reviews = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self.reviews += pc.sum(pc.list_value_length(table.column("reviews"))).as_py() or 0

    def close(self) -> None:
        pass


@contextlib.contextmanager
def open_writer(path: str, fmt: str) -> Iterator[ReviewGroupWriter]:
    """A ReviewGroupWriter on a temporary file that replaces `path` only if the whole block succeeds."""
    with output_file(path) as tmp:
        writer = ReviewGroupWriter(tmp, fmt)
        try:
            yield writer
        finally:
            writer.close()
