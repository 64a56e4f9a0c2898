"""Summaries for every review group of a table: one row per (restaurant, cultural group), batched by length.
`python -m flavorfusion.summarize` runs `summarize(cfg)` on an engine (`flavorfusion.engines`):

- `engine=local` (`summarization/local.py`) writes one Parquet file in parts, so that a killed run resumes where it
  stopped;
- `engine=beam` (`summarization/beam.py`, RunInference) runs on Beam's local runner or on Dataflow GPU workers and
  writes a directory of Parquet shards with the same columns and provenance.

Both follow `summarization/rules.py`: the same rows and provenance, a failed batch retried group by group, dead
letters counted in the report (`<output>.failed.jsonl`, or `<output>/_failed/`), and each group's contrast with
the specificity report beside the output (`<output>.contrast.json`). Both generate through the one inference
runtime (`flavorfusion.models.runtime.InferenceRuntime`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from flavorfusion import contrast
from flavorfusion.checks import check_summarize_output, validate
from flavorfusion.engines import FAILED_DIR, Engine
from flavorfusion.runs import instantiate_node
from flavorfusion.summarization.local import TableContrast, failed_path, parts_dir, run_local, summaries_of
from flavorfusion.summarization.rules import OUTPUT_SCHEMA, contrast_path, write_contrast
from flavorfusion.tally import Tally

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_SCHEMA", "SummarizeJob", "SummarizeReport", "contrast_path", "failed_path", "parts_dir",
           "summarize"]


@dataclass
class SummarizeReport:
    """What a run did: rows already done, generated now, skipped (by reason), failed (in the dead-letter output),
    where the output is, and how specific its summaries are."""

    output: str
    total: int
    already_done: int
    generated: int
    skipped: dict
    seconds: float
    failed: int = 0
    dead_letters: str | None = None
    specificity: dict | None = None  # contrast.specificity_report of the whole output
    tally: Tally | None = None  # what the engine counted (times included)

    @classmethod
    def from_tally(cls, output: str, tally: Tally, seconds: float, dead_letters: str) -> SummarizeReport:
        skipped = {key[1]: n for key, n in sorted(tally.items()) if key[0] == "skipped" and n}
        return cls(output, tally["rows", "read"], tally["rows", "already_done"], tally["rows", "generated"], skipped,
                   seconds, tally["rows", "failed"], dead_letters if tally["rows", "failed"] else None, tally=tally)

    def line(self) -> str:
        failed = f", {self.failed} failed (in {self.dead_letters})" if self.failed else ""
        line = (f"{self.output}: {self.total} review groups, {self.already_done} already done, {self.generated} "
                f"generated ({self.rows_per_s:.2f} rows/s){failed}, skipped {self.skipped or 'none'}")
        if self.specificity is not None:
            line += f"\n{self.output}: {contrast.specificity_line(self.specificity)} ({contrast_path(self.output)})"
        return line

    @property
    def rows_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0


@dataclass
class SummarizeJob:
    """Review groups -> one summary each, as an engine runs it (`flavorfusion.engines.Job`)."""

    cfg: DictConfig
    engine: Engine
    name: str = "summarize"
    schema: Any = OUTPUT_SCHEMA
    table_contrast: TableContrast | None = None  # engine=local: set by run_local
    _worker_settings: Any = None

    def run_local(self, output: str) -> Tally:
        """Resumable: the groups already in `output` or in a part are skipped."""
        tally, self.table_contrast = run_local(self.cfg, output)
        return tally

    def worker_settings(self):
        """Checked by the driver once: the input's files and columns, the model's tokenizer, config and files."""
        from flavorfusion.summarization.beam import SummarizeWorkerSettings

        if self._worker_settings is None:
            self._worker_settings = SummarizeWorkerSettings.from_job(self)
        return self._worker_settings

    def expand(self, pipeline, shards: str):
        from flavorfusion.summarization.beam import expand_summarize

        return expand_summarize(pipeline, self.worker_settings(), shards)

    def specificity(self, output: str) -> dict:
        """The specificity report of what `output` holds: engine=local computes it from the output's summaries and
        the table's reviews; engine=beam's workers wrote each restaurant's record under `<output>/_contrast/`."""
        if self.table_contrast is not None:
            return self.table_contrast.specificity(summaries_of(output))
        from flavorfusion.summarization.beam import read_specificity_records

        return contrast.specificity_report(read_specificity_records(output))


def summarize(cfg: DictConfig) -> SummarizeReport:
    validate(cfg)  # before the model loads or anything generates
    engine = instantiate_node(cfg, "engine")
    check_summarize_output(cfg, directory=engine.writes_directory)
    output = str(cfg.output)
    job = SummarizeJob(cfg, engine)
    if engine.writes_directory:
        job.worker_settings()  # the driver checks what workers will read before anything runs
    if engine.dry_run:
        dry_run = engine.dry_run_job(job)
        print(dry_run.text())
        return SummarizeReport(output, 0, 0, 0, {}, 0.0)
    start = time.perf_counter()
    tally = engine.run(job, output)
    seconds = tally["time", "generate_ms"] / 1000 if ("time", "generate_ms") in tally else time.perf_counter() - start
    dead_letters = f"{output.rstrip('/')}/{FAILED_DIR}" if engine.writes_directory else failed_path(output)
    report = SummarizeReport.from_tally(output, tally, seconds, dead_letters)
    if cfg.contrast.enabled:
        contrast_start = time.perf_counter()
        report.specificity = job.specificity(output)
        write_contrast(contrast_path(output), report.specificity)
        tally["time", "contrast_ms"] += round((time.perf_counter() - contrast_start) * 1000)
    print(report.line())
    return report
