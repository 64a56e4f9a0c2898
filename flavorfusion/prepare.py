"""Raw review data -> review groups (Parquet or the original code's CSV) and a report.

    python -m flavorfusion.prepare source=google_local source.reviews=PATH source.meta=PATH output=PATH
    python -m flavorfusion.prepare source=lsars source.path=PATH output=PATH translate=google

Everything is built from config (`conf/prepare.yaml`, groups `source`, `grouping`, `translate`);
`prepare(cfg)` returns the report as a dict so tests can inspect it.
"""

from __future__ import annotations

import os
import time
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from flavorfusion.data.report import PrepareReport, report_path
from flavorfusion.data.sources import DiscardWriter, open_writer, output_file, output_format
from flavorfusion.errors import ConfigError, FlavorFusionError, exit_on_user_error


def _build(cfg: DictConfig, key: str) -> Any:
    """instantiate, but a user error raised while building surfaces as itself (one line, no traceback)."""
    try:
        return hydra.utils.instantiate(cfg[key], _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, FlavorFusionError):
            raise cause from None
        raise ConfigError(f"{key}: {cause or err}") from None


def prepare(cfg: DictConfig) -> dict[str, Any]:
    missing = [k for k in OmegaConf.missing_keys(cfg) if k != "output"]
    if missing:
        raise ConfigError(
            f"missing value for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=PATH"
        )
    source = _build(cfg, "source")
    grouping = _build(cfg, "grouping")
    translator = _build(cfg, "translate")
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
        source.write_groups(
            DiscardWriter(source.schema),
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

    if OmegaConf.is_missing(cfg, "output"):
        raise ConfigError("missing value for output: set it on the command line, e.g. output=groups.parquet")
    output = str(cfg.output)
    if os.path.isdir(output):
        raise ConfigError(f"output={output} is a directory; name a file, e.g. output={output}/groups.parquet")
    report.output, report.format = output, output_format(output, str(cfg.format))
    # the writer opens first: an unwritable output fails before the (long) read, and nothing is
    # renamed into place unless the data and the report are both complete
    with open_writer(output, report.format, source.schema) as writer:
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


@hydra.main(config_path="../conf", config_name="prepare", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
