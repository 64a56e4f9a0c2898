"""`engine`: where `prepare` runs (`conf/engine/<name>.yaml`).

`local` (the default) reads the inputs in this process and writes one file; `beam`
(`flavorfusion.data.engine.beam`) runs the same rules as an Apache Beam pipeline, on the in-process
Python runner or on Google Cloud Dataflow, and writes sharded Parquet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flavorfusion.data.report import PrepareReport, report_path
from flavorfusion.data.writer import DiscardWriter, open_writer, output_file

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.sources import ReviewGroupSource
    from flavorfusion.data.translate import Translator


@dataclass
class PrepareTask:
    """What an engine prepares: built from `conf/prepare.yaml` by `flavorfusion.preparation`."""

    cfg: DictConfig  # the composed config (engine=beam rebuilds source and grouping on workers from it)
    source: ReviewGroupSource
    grouping: Grouping
    translator: Translator
    output: str | None  # None for a dry run
    format: str | None
    progress: bool


class LocalEngine:
    """`engine=local`: one process streams the inputs and writes one Parquet or CSV file."""

    name = "local"
    #: the output is one file (a `beam` output is a directory of shards)
    writes_directory = False
    dry_run = False

    def run(self, task: PrepareTask) -> dict[str, Any]:
        source, grouping, translator = task.source, task.grouping, task.translator
        output, fmt, progress = task.output, task.format, task.progress
        started = time.perf_counter()
        source.input_files()  # a missing input fails here, before any output exists
        report = PrepareReport(source=source.name)
        if translator.dry_run:
            return self._translation_dry_run(source, grouping, translator, report, progress, started)

        report.output, report.format = output, fmt
        # the writer opens first: an unwritable output fails before the (long) read, and nothing is
        # renamed into place unless the data and the report are both complete
        with open_writer(output, fmt) as writer:
            source.write_groups(writer, grouping=grouping, translator=translator, report=report, progress=progress)
            report.written.update(rows=writer.rows, reviews=writer.reviews)
            report.check()
            report.seconds = round(time.perf_counter() - started, 3)
            with output_file(report_path(output)) as tmp:
                report.save(tmp)
        print(report.table())
        return report.as_dict()

    @staticmethod
    def _translation_dry_run(source, grouping, translator, report: PrepareReport, progress: bool, started: float):
        """Read everything and count what translation would cost; nothing is translated or written."""
        source.write_groups(DiscardWriter(), grouping=grouping, translator=translator, report=report, progress=progress)
        report.check()
        report.seconds = round(time.perf_counter() - started, 3)
        cost = report.details.get("translation", {})
        print(
            f"dry run: {cost.get('pending_chars', 0):,} characters in {cost.get('pending_texts', 0):,} texts "
            f"to translate ({cost.get('cache_hits', 0):,} texts already cached); estimated cost "
            f"${cost.get('estimated_cost_usd', 0.0):,.2f} at ${cost.get('price_per_million_chars', 0.0):.2f} "
            "per million characters. Nothing was translated or written."
        )
        return report.as_dict()
