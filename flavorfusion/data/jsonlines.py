"""Streaming JSON lines, local or remote (gs://), plain or compressed, with a progress bar that follows the bytes
read; and pausing the cyclic GC while millions of short-lived records stream by."""

from __future__ import annotations

import contextlib
import gc
import io
from collections.abc import Iterable, Iterator

import fsspec
from fsspec.compression import compr
from fsspec.utils import infer_compression
from tqdm.auto import tqdm

from flavorfusion.errors import DataError

_READ_BUFFER = 1 << 20


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
    # disable=None: bars on a terminal, silence in logs and CI
    with (
        raw,
        tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=None if progress else True) as bar,
    ):
        reader = line_reader(raw, path, buffered=local)
        with read_errors(url):
            yield LineFile(reader, raw, bar)
        bar.update(size - bar.n)


@contextlib.contextmanager
def read_errors(url: str) -> Iterator[None]:
    """A truncated or corrupt file (a .gz cut short) stops the read with a DataError naming it."""
    try:
        yield
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {url}: {err}") from None


def line_reader(raw, path: str, buffered: bool = False):
    """The lines of an open binary stream `raw` (iterate it), decompressed as `path`'s name says
    (`.gz`, `.bz2`, ...); `buffered`: `raw` already reads ahead in large blocks."""
    compression = infer_compression(path)
    if compression:
        return compr[compression](raw, mode="rb")  # buffered by itself
    return raw if buffered else io.BufferedReader(raw, buffer_size=_READ_BUFFER)


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
