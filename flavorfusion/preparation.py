"""The preparation stage: raw review data -> review groups (Parquet or the original code's CSV) and a report.

Everything is built from config (`conf/prepare.yaml`, groups `source`, `grouping`, `translate`);
`prepare(cfg)` returns the report as a dict so tests can inspect it. `python -m flavorfusion.prepare` calls it.
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig

from flavorfusion.checks import prepare_output, validate_prepare
from flavorfusion.data.report import PrepareReport, report_path
from flavorfusion.data.writer import DiscardWriter, open_writer, output_file, output_format
from flavorfusion.runs import build


def prepare(cfg: DictConfig) -> dict[str, Any]:
    validate_prepare(cfg)
    source = build(cfg, "source")
    grouping = build(cfg, "grouping")
    translator = build(cfg, "translate")
    try:
        return _run(cfg, source, grouping, translator)
    finally:
        translator.close()


def _run(cfg: DictConfig, source, grouping, translator) -> dict[str, Any]:
    started = time.perf_counter()
    source.input_files()  # a missing input fails here, before any output exists
    report = PrepareReport(source=source.name)
    progress = bool(cfg.get("progress", True))

    if translator.dry_run:
        return _dry_run(source, grouping, translator, report, progress, started)

    output = prepare_output(cfg)
    report.output, report.format = output, output_format(output, str(cfg.format))
    # the writer opens first: an unwritable output fails before the (long) read, and nothing is
    # renamed into place unless the data and the report are both complete
    with open_writer(output, report.format) as writer:
        source.write_groups(
            writer, grouping=grouping, translator=translator, report=report, progress=progress
        )
        report.written.update(rows=writer.rows, reviews=writer.reviews)
        report.check()
        report.seconds = round(time.perf_counter() - started, 3)
        with output_file(report_path(output)) as tmp:
            report.save(tmp)
    print(report.table())
    return report.as_dict()


def _dry_run(source, grouping, translator, report: PrepareReport, progress: bool, started: float) -> dict[str, Any]:
    """Read everything and count what translation would cost; nothing is translated or written."""
    source.write_groups(
        DiscardWriter(),
        grouping=grouping,
        translator=translator,
        report=report,
        progress=progress,
    )
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
