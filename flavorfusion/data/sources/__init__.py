"""Raw review sources -> review groups. One class per source, built from `conf/source/<name>.yaml`.

Shared here: streaming JSON lines (local or gs://, plain or compressed) with a progress bar, and the
writer that turns batches of review groups into Parquet or the original code's CSV without ever
leaving a partial file at the output path.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.compression import compr
from fsspec.utils import infer_compression
from tqdm.auto import tqdm

from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output

if TYPE_CHECKING:
    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.report import PrepareReport
    from flavorfusion.data.translate import Translator

# The original code's CSV joined a group's reviews into one cell with this separator.
CSV_REVIEW_SEPARATOR = "|||||"
OUTPUT_FORMATS = ("parquet", "csv")

_READ_BUFFER = 1 << 20


class ReviewGroupSource(ABC):
    """Reads one raw data set and writes its review groups (`id`, `reviews`, `summary`, ...)."""

    #: the name used in the report and in `conf/source/<name>.yaml`
    name: str
    #: the Arrow schema of the rows `write_groups` produces
    schema: pa.Schema

    @abstractmethod
    def input_files(self) -> dict[str, list[str]]:
        """Concrete input files per input role; a missing file raises DataError before any work."""

    @abstractmethod
    def write_groups(
        self,
        writer: ReviewGroupWriter,
        *,
        grouping: Grouping,
        translator: Translator,
        report: PrepareReport,
        progress: bool = True,
    ) -> None:
        """Stream the input, write review groups as Arrow tables, and account every line in `report`."""


class LineFile:
    """An open JSON-lines file: iterate `lines` (bytes, newline included); call `progress()` now and
    then to move the progress bar to the bytes read so far."""

    def __init__(self, lines: Iterable[bytes], raw, bar: tqdm):
        self.lines, self._raw, self._bar = lines, raw, bar

    def progress(self) -> None:
        self._bar.update(self._raw.tell() - self._bar.n)


@contextlib.contextmanager
def open_lines(url: str, *, desc: str, progress: bool = True) -> Iterator[LineFile]:
    """Open a JSON-lines file, local or remote, plain or compressed (inferred from the name: `.gz`,
    `.bz2`, `.xz`, ...), for streaming. Buffered reads keep memory flat whatever the file size; the
    progress bar follows the bytes read from storage, so it reaches 100% for compressed files too."""
    fs, path = fsspec.core.url_to_fs(url)
    local = fsspec.utils.get_protocol(url) in ("file", "local")
    try:
        size = fs.size(path)
        # a local file opened by Python itself is C all the way down: the buffered reader then
        # splits lines without calling back into Python for every line
        raw = open(path, "rb", buffering=_READ_BUFFER) if local else fs.open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise DataError(f"input file not found: {url}") from None
    compression = infer_compression(path)
    # disable=None: bars on a terminal, silence in logs and CI
    with (
        raw,
        tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=None if progress else True) as bar,
    ):
        if compression:
            reader = compr[compression](raw, mode="rb")  # buffered by itself
        elif local:
            reader = raw
        else:
            reader = io.BufferedReader(raw, buffer_size=_READ_BUFFER)
        try:
            yield LineFile(reader, raw, bar)
        except (OSError, EOFError) as err:  # a truncated or corrupt .gz: stop, and say which
            raise DataError(f"cannot read {url}: {err}") from None
        bar.update(size - bar.n)


def iter_lines(url: str, *, desc: str, progress: bool = True) -> Iterator[bytes]:
    """The lines of a JSON-lines file (see `open_lines`), each with its newline if it had one."""
    with open_lines(url, desc=desc, progress=progress) as file:
        for n, line in enumerate(file.lines, 1):
            if not n & 0x3FFF:
                file.progress()
            yield line


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector. Streaming allocates millions of short-lived objects,
    which would trigger collections over and over, each walking everything kept so far; the review
    records here hold no reference cycles, so reference counting frees them all the same."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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

    def __init__(self, path: str, fmt: str, schema: pa.Schema):
        self.path, self.format, self.schema = path, fmt, schema
        self.rows = 0
        self.reviews = 0
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by close())
            self._csv = csv.writer(self._file)
            self._csv.writerow(["id", "summary", "review_str"])

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
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

    def __init__(self, schema: pa.Schema):
        self.path, self.format, self.schema = None, None, schema
        self.rows = 0
        self.reviews = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self.reviews += pc.sum(pc.list_value_length(table.column("reviews"))).as_py() or 0

    def close(self) -> None:
        pass


@contextlib.contextmanager
def open_writer(path: str, fmt: str, schema: pa.Schema) -> Iterator[ReviewGroupWriter]:
    """A ReviewGroupWriter on a temporary file that replaces `path` only if the whole block succeeds."""
    with output_file(path) as tmp:
        writer = ReviewGroupWriter(tmp, fmt, schema)
        try:
            yield writer
        finally:
            writer.close()
