"""File helpers shared by every stage: fsspec paths (local or gs://) and atomic writes."""

import contextlib
import os
import uuid
from collections.abc import Iterator

import fsspec

from flavorfusion.errors import DataError


def expand_paths(paths: str | list[str]) -> list[str]:
    """Expand one path, a glob or several into concrete file URLs; a pattern matching nothing is an error.
    A directory stands for the files in it but hidden ones (`.x`, `_x`), as a directory of shards
    (`prepare engine=beam`, Spark, Hive) is read."""
    patterns = [paths] if isinstance(paths, str) else list(paths)
    if not patterns:
        raise DataError("no input path given")
    files: list[str] = []
    for pattern in patterns:
        fs, _, matches = fsspec.get_fs_token_paths(pattern)
        if len(matches) == 1 and fs.isdir(matches[0]):
            matches = [m for m in fs.ls(matches[0], detail=False) if not os.path.basename(m).startswith((".", "_"))]
        matches = [m for m in matches if fs.isfile(m)]
        if not matches:
            raise DataError(f"no file matches {pattern!r}")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files += sorted(m if protocol == "file" else f"{protocol}://{m}" for m in matches)
    return files


def writable_parent(path: str | os.PathLike) -> str:
    """The directory `path` will be written in, created if needed; DataError if it can't be written."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create output directory {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise DataError(f"output directory {parent} is not writable")
    return parent


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Works for local files and directories; a failed or interrupted run leaves nothing under `path`.
    """
    path = os.fspath(path)
    parent = writable_parent(path)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if os.path.isdir(path) and os.path.isdir(tmp):
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            import shutil

            shutil.rmtree(tmp) if os.path.isdir(tmp) else os.remove(tmp)
