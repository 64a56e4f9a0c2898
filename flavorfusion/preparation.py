"""The preparation stage: raw review data -> review groups (Parquet or the original code's CSV) and a report.

Everything is built from config (`conf/prepare.yaml`, groups `source`, `grouping`, `translate`, `engine`);
`prepare(cfg)` returns the report as a dict so tests can inspect it. `python -m flavorfusion.prepare` calls it.
The stage owns the output, the report and what is printed; the engine (`flavorfusion.engines`) runs the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig

from flavorfusion.checks import prepare_output, validate_prepare
from flavorfusion.data.grouping import Grouping
from flavorfusion.data.record import SCHEMA
from flavorfusion.data.report import PrepareReport, report_path
from flavorfusion.data.review_groups import as_list
from flavorfusion.data.sources import ReviewGroupSource
from flavorfusion.data.translate import Translator
from flavorfusion.data.writer import DiscardWriter, open_writer, output_file, output_format
from flavorfusion.engines import Engine, Tally
from flavorfusion.errors import ConfigError
from flavorfusion.runs import instantiate_node


@dataclass
class PrepareJob:
    """Raw files -> review groups, as an engine runs it (`flavorfusion.engines.Job`)."""

    cfg: DictConfig  # engine=beam rebuilds the source's rules and the grouping on workers from it
    engine: Engine
    source: ReviewGroupSource
    grouping: Grouping
    translator: Translator
    report: PrepareReport
    format: str | None
    progress: bool
    name: str = "prepare"
    schema: pa.Schema = SCHEMA
    graph_built: bool = False

    def run_local(self, output: str) -> Tally:
        """Streams the inputs through the source's rules, which fill the report as they read: the tally is empty."""
        with open_writer(output, self.format) as writer:
            self.source.write_groups(writer, grouping=self.grouping, translator=self.translator, report=self.report,
                                     progress=self.progress)
            self.report.written.update(rows=writer.rows, reviews=writer.reviews)
        return Tally()

    def worker_settings(self):
        from flavorfusion.data.sources.google_local import GoogleLocalSource, refuse_translation
        from flavorfusion.data.sources.google_local_beam import PrepareWorkerSettings

        if not isinstance(self.source, GoogleLocalSource):
            raise ConfigError(f"engine=beam runs source=google_local; source={self.source.name} fits engine=local")
        refuse_translation(self.translator)
        return PrepareWorkerSettings.from_job(self)

    def expand(self, pipeline, shards: str):
        from flavorfusion.data.sources.google_local_beam import expand_prepare

        settings = self.worker_settings()
        self.graph_built = True
        if self.report.output is None:  # a dry run: the configured patterns, not listed (gs:// needs credentials)
            files = {"meta": as_list(self.source.meta), "reviews": as_list(self.source.reviews)}
        else:
            files = self.source.input_files()  # a missing input fails here, before the pipeline starts
            for name in ("meta", "reviews"):
                self.report.add_input(name, files[name])
        return expand_prepare(pipeline, files, settings, shards)


def prepare(cfg: DictConfig) -> dict[str, Any]:
    validate_prepare(cfg)
    source = instantiate_node(cfg, "source")
    grouping = instantiate_node(cfg, "grouping")
    translator = instantiate_node(cfg, "translate")
    engine = instantiate_node(cfg, "engine")
    progress = bool(cfg.get("progress", True))
    try:
        if translator.dry_run:
            return translation_dry_run(source, grouping, translator, progress)
        if engine.dry_run:
            job = PrepareJob(cfg, engine, source, grouping, translator, PrepareReport(source.name), None, progress)
            dry_run = engine.dry_run_job(job)
            print(dry_run.text())
            return dry_run.as_dict()
        output = prepare_output(cfg, directory=engine.writes_directory)
        fmt = output_format(output, str(cfg.format))
        if engine.writes_directory and fmt != "parquet":
            raise ConfigError(f"engine={engine.name} writes Parquet shards: format=csv (or a .csv output) is "
                              "engine=local only")
        started = time.perf_counter()
        report = PrepareReport(source=source.name, output=output, format=fmt)
        job = PrepareJob(cfg, engine, source, grouping, translator, report, fmt, progress)
        tally = engine.run(job, output)
        if job.graph_built:  # a graph's workers send their counts back as a tally
            report.add_tally(tally, grouping=grouping.details())
        report.check()
        report.seconds = round(time.perf_counter() - started, 3)
        with output_file(report_path(output)) as tmp:  # last: a report beside the output means it is complete
            report.save(tmp)
        print(report.table())
        return report.as_dict()
    finally:
        translator.close()


def translation_dry_run(source, grouping, translator, progress: bool) -> dict[str, Any]:
    """Read everything and count what translation would cost; nothing is translated or written."""
    started = time.perf_counter()
    source.input_files()
    report = PrepareReport(source=source.name)
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
