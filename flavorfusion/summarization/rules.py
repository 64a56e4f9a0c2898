"""The summarize rules both engines follow (`summarization/local.py`, `summarization/beam.py`): the output's
columns and provenance, a failed batch retried group by group, dead letters, and where the contrast report goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
from omegaconf import DictConfig

from flavorfusion import contrast
from flavorfusion.config.contrast import ContrastConf
from flavorfusion.config.schema import as_schema
from flavorfusion.data.record import ReviewGroup
from flavorfusion.io import atomic_output
from flavorfusion.models.runtime import InferenceRuntime

log = logging.getLogger(__name__)

# the record's fields copied to each output row when the input has them
CARRIED = ("business_id", "name", "group", "group_confidence", "n_reviews")
TERM = pa.struct([("term", pa.string()), ("z", pa.float64()), ("count", pa.int32())])
QUOTE = pa.struct([("term", pa.string()), ("text", pa.string())])
OUTPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("business_id", pa.string()),
        ("name", pa.string()),
        ("group", pa.string()),
        ("group_confidence", pa.float64()),
        ("n_reviews", pa.int32()),
        ("summary", pa.string()),
        # what this group's reviewers say more than the restaurant's other groups (flavorfusion.contrast)
        ("distinctive_terms", pa.list_(TERM)),
        ("quotes", pa.list_(QUOTE)),
        ("contrast_note", pa.string()),  # why a group has no terms
        ("model", pa.string()),  # the model source it was loaded from (model.name_or_path)
        ("model_sha256", pa.string()),  # of its weights: two outputs from the same weights say so
        ("generation", pa.string()),  # the generation settings, as JSON
        ("contrast", pa.string()),  # the contrast settings, as JSON
    ]
)
# the provenance columns a resumed run must share with what is already written
PROVENANCE_CHECKED = ("model_sha256", "generation", "contrast")


@dataclass(frozen=True)
class Failure:
    """A group that could not be summarized, and why (one line)."""

    error: str


def error_line(err: BaseException) -> str:
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__


def summarize_batch(runtime: InferenceRuntime, features: list[dict]) -> list[str | Failure]:
    """Summaries of a batch; if the batch fails, each group is tried alone, so a bad group fails alone (and a
    batch too big for the accelerator's memory becomes single groups)."""
    try:
        return runtime.generate(features)
    except Exception as err:  # noqa: BLE001 - a failing group goes to the dead letters, not the whole run down
        if len(features) == 1:
            log.warning("a review group failed: %s", error_line(err))
            return [Failure(error_line(err))]
    return [result for feature in features for result in summarize_batch(runtime, [feature])]


def output_row(group: ReviewGroup, summary: str, provenance: dict, group_contrast: contrast.GroupContrast) -> dict:
    return {"id": group.id, **{k: getattr(group, k) for k in CARRIED}, "summary": summary,
            **group_contrast.columns(), **provenance}


def dead_letter(group: ReviewGroup, failure: Failure) -> dict:
    """A row that failed, as the dead-letter output keeps it: the group's keys and the error line."""
    return {"id": group.id, **{k: getattr(group, k) for k in ("business_id", "name", "group")}, "error": failure.error}


def contrast_settings(cfg: DictConfig) -> ContrastConf:
    return as_schema(cfg.contrast, ContrastConf)


def provenance_of(runtime: InferenceRuntime, settings: ContrastConf) -> dict:
    """The provenance columns: the model source, its weights' hash, the generation and the contrast settings."""
    return {"model": str(runtime.source), "model_sha256": runtime.sha256,
            "generation": json.dumps(dataclasses.asdict(runtime.generation), sort_keys=True),
            "contrast": json.dumps(dataclasses.asdict(settings), sort_keys=True)}


def contrast_path(output: str) -> str:
    """Where the specificity report goes: beside the output (`summaries.parquet` -> `summaries.contrast.json`,
    `summaries/` -> `summaries.contrast.json`)."""
    base = output.rstrip("/")
    return f"{os.path.splitext(base)[0] if base.endswith('.parquet') else base}.contrast.json"


def write_contrast(path: str, report: dict) -> None:
    """The specificity report as JSON, written whole under a temporary name first (local or object storage)."""
    text = json.dumps(report, indent=1, ensure_ascii=False)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "w") as f:  # an object appears whole when its upload completes
            f.write(text)
        return
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
