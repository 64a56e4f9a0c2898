"""The preparation stage: raw review data -> review groups (Parquet or the original code's CSV) and a report.

Everything is built from config (`conf/prepare.yaml`, groups `source`, `grouping`, `translate`, `engine`);
`prepare(cfg)` returns the report as a dict so tests can inspect it. `python -m flavorfusion.prepare` calls it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from flavorfusion.checks import prepare_output, validate_prepare
from flavorfusion.data.engine import PrepareTask
from flavorfusion.data.writer import output_format
from flavorfusion.runs import build


def prepare(cfg: DictConfig) -> dict[str, Any]:
    validate_prepare(cfg)
    source = build(cfg, "source")
    grouping = build(cfg, "grouping")
    translator = build(cfg, "translate")
    engine = build(cfg, "engine")
    try:
        writes = not (translator.dry_run or engine.dry_run)
        output = prepare_output(cfg, directory=engine.writes_directory) if writes else None
        fmt = output_format(output, str(cfg.format)) if output else None
        return engine.run(PrepareTask(cfg, source, grouping, translator, output, fmt, bool(cfg.get("progress", True))))
    finally:
        translator.close()
