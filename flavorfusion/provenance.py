"""The DVC data version of a run's inputs: the hash DVC recorded for each input file, read from `dvc.lock` (the
out of the stage that made it) or from a `.dvc` file (`dvc add`ed data, also a folder above the file).

`train` writes it beside the export (`model/data_version.json`) and logs it as the `data_version` hyperparameter
of every logger (the W&B run's config). Outside a DVC repository, or for inputs DVC does not track (gs://,
globs), there is nothing to record: `data_version` returns None. No DVC import: the files are plain YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from flavorfusion.io import atomic_output

FILE_NAME = "data_version.json"


def repo_root(start: str | os.PathLike = ".") -> Path | None:
    """The nearest directory at or above `start` holding `.dvc/` (a DVC repository), or None."""
    here = Path(start).resolve()
    for directory in (here, *here.parents):
        if (directory / ".dvc").is_dir():
            return directory
    return None


def _load_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _hash_of(entry: dict) -> str | None:
    return entry.get("md5") or entry.get("etag") or entry.get("checksum")


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lookup(path: str, root: Path) -> dict | None:
    """What DVC recorded for `path` (relative to `root` or absolute): {path, md5, source[, within], verified}."""
    absolute = (root / path).resolve() if not os.path.isabs(path) else Path(path).resolve()
    try:
        rel = absolute.relative_to(root).as_posix()
    except ValueError:
        return None
    found = None
    for name, stage in (_load_yaml(root / "dvc.lock").get("stages") or {}).items():
        for out in stage.get("outs") or []:
            out_path = str(out.get("path", ""))
            if rel == out_path or rel.startswith(out_path.rstrip("/") + "/"):
                found = {"md5": _hash_of(out), "source": f"dvc.lock:{name}", "tracked": out_path}
    if found is None:  # `dvc add`ed: data/x.jsonl.dvc, or data.dvc for a folder above it
        for candidate in (absolute, *absolute.parents):
            if candidate == root:
                break
            dvc_file = candidate.with_name(candidate.name + ".dvc")
            outs = _load_yaml(dvc_file).get("outs") or []
            if outs:
                found = {"md5": _hash_of(outs[0]), "source": dvc_file.relative_to(root).as_posix(),
                         "tracked": candidate.relative_to(root).as_posix()}
                break
    if found is None or not found["md5"]:
        return None
    record = {"path": rel, "md5": found["md5"], "source": found["source"]}
    if found["tracked"] != rel:
        record["within"] = found["tracked"]  # a file inside a tracked folder: the folder's hash
    elif absolute.is_file() and not found["md5"].endswith(".dir"):
        record["verified"] = _file_md5(absolute) == found["md5"]  # false: changed since DVC recorded it
    return record


def data_version(paths: str | list[str] | None, start: str | os.PathLike = ".") -> dict | None:
    """{"inputs": [...], "repo": root} for the inputs DVC tracks among `paths` (data.path), or None."""
    root = repo_root(start)
    if root is None or not paths:
        return None
    paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    inputs = [r for p in paths if "://" not in p for r in [lookup(p, root)] if r is not None]
    return {"inputs": inputs} if inputs else None


def record(paths, export_dir: str | None, loggers: list = ()) -> dict | None:
    """Write `data_version.json` into the export and log `data_version` to every logger; None: nothing tracked."""
    version = data_version(paths)
    if version is None:
        return None
    if export_dir:
        with atomic_output(os.path.join(export_dir, FILE_NAME)) as tmp, open(tmp, "w") as f:
            json.dump(version, f, indent=2, sort_keys=True)
    for logger in loggers:
        logger.log_hyperparams({"data_version": version})
    return version


def _render(text: str, params: dict) -> str:
    """dvc.yaml's `${a.b}` templating, from params.yaml (an unknown key is left as it is)."""

    def value(match: re.Match) -> str:
        node = params
        for key in match.group(1).strip().split("."):
            if not isinstance(node, dict) or key not in node:
                return match.group(0)
            node = node[key]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def missing_input_hint(path: str, start: str | os.PathLike = ".") -> str | None:
    """For an input DVC knows how to make: the command that makes it (`dvc pull ...` / `dvc repro <stage>`)."""
    root = repo_root(start)
    if root is None or "://" in str(path):
        return None
    absolute = Path(path).resolve()
    try:
        rel = absolute.relative_to(root).as_posix()
    except ValueError:
        return None
    params = _load_yaml(root / "params.yaml")
    for name, stage in (_load_yaml(root / "dvc.yaml").get("stages") or {}).items():
        for out in stage.get("outs") or []:
            out_path = _render(next(iter(out)) if isinstance(out, dict) else str(out), params)
            if rel == out_path or rel.startswith(out_path.rstrip("/") + "/"):
                return f"run `dvc pull {out_path}` (or `dvc repro {name}` to make it)"
    for candidate in (absolute, *absolute.parents):
        if candidate == root:
            break
        if candidate.with_name(candidate.name + ".dvc").is_file():
            return f"run `dvc pull {candidate.relative_to(root).as_posix()}`"
    return None
