"""`summarize engine=local`: one Parquet file written in parts, so that a killed run resumes where it stopped.

Parts live in `<output>.parts/`, each written under a temporary name and renamed, so a killed run loses at most the
part it was generating. When every group has its summary, the parts (and a previous output, if any) are merged
into `<output>` (Parquet), again through a temporary file, and the parts are removed. A rerun skips the groups
already in `<output>` or in a part: after a complete run it writes nothing. Rows that still fail after their batch
was retried group by group go to `<output>.failed.jsonl`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig
from tqdm.auto import tqdm

from flavorfusion import contrast
from flavorfusion.config.contrast import ContrastConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output
from flavorfusion.models.runtime import InferenceRuntime
from flavorfusion.summarization.rules import (
    OUTPUT_SCHEMA,
    PROVENANCE_CHECKED,
    Failure,
    contrast_settings,
    dead_letter,
    output_row,
    provenance_of,
    summarize_batch,
)
from flavorfusion.tally import Tally

log = logging.getLogger(__name__)


def parts_dir(output: str) -> str:
    return f"{output}.parts"


def written_files(output: str) -> list[str]:
    """The output (if any) and every complete part, oldest first."""
    return ([output] if os.path.isfile(output) else []) + sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))


def done_ids(output: str) -> tuple[set[str], list[dict]]:
    """Ids already summarized (the output and every complete part) and the provenance they were written with."""
    files = written_files(output)
    ids: set[str] = set()
    provenance = []
    for path in files:
        try:
            table = pq.read_table(path, columns=["id", *PROVENANCE_CHECKED])
        except (pa.ArrowInvalid, KeyError) as err:
            raise DataError(f"{path} is not a summarize output of this version ({err}); use another output or "
                            "remove it") from None
        ids.update(table.column("id").to_pylist())
        if table.num_rows:
            provenance.append({"path": path, **{key: table.column(key)[0].as_py() for key in PROVENANCE_CHECKED}})
    return ids, provenance


def check_same_provenance(provenance: list[dict], expected: dict, output: str) -> None:
    for found in provenance:
        if any(found[key] != expected[key] for key in PROVENANCE_CHECKED):
            raise ConfigError(f"output={output}: {found['path']} was written by another model or other generation "
                              "settings (or contrast settings); give a new output or remove the old one")


def summaries_of(output: str) -> dict[str, str]:
    """id -> summary of a summarize output: one file, or a directory of shards (local or object storage)."""
    import fsspec
    import pyarrow.dataset as ds

    fs, location = fsspec.core.url_to_fs(output)
    table = ds.dataset(location, filesystem=fs, format="parquet").to_table(columns=["id", "summary"])
    return dict(zip(table.column("id").to_pylist(), table.column("summary").to_pylist(), strict=True))


def write_part(table: pa.Table, directory: str, index: int) -> str:
    path = os.path.join(directory, f"part-{index:05d}-{time.time_ns()}.parquet")
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


def merge(output: str) -> int:
    """The output and every part as one Parquet file (first row of each id kept), written atomically."""
    files = written_files(output)
    table = pa.concat_tables([pq.read_table(f).cast(OUTPUT_SCHEMA) for f in files]) if files else OUTPUT_SCHEMA.empty_table()
    seen: set[str] = set()
    keep = [i for i, gid in enumerate(table.column("id").to_pylist()) if not (gid in seen or seen.add(gid))]
    table = table.take(keep)
    with atomic_output(output) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    shutil.rmtree(parts_dir(output), ignore_errors=True)
    return table.num_rows


def failed_path(output: str) -> str:
    """engine=local's dead letters: `summaries.parquet` -> `summaries.failed.jsonl`."""
    return f"{os.path.splitext(output)[0]}.failed.jsonl"


def write_dead_letters(path: str, rows: list[dict]) -> None:
    """The rows that failed in this run replace the last run's (a rerun retries them); none: the file goes."""
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


class TableContrast:
    """The contrast of every group of a table: each restaurant's terms are computed once, on first use, against
    the restaurant's other groups (and, for restaurants with few reviews, the whole table's words)."""

    def __init__(self, groups: list[ReviewGroup], selection: ReviewSelection, settings: ContrastConf):
        self.selection, self.settings = selection, settings
        self.restaurants = contrast.by_restaurant(groups)
        # each group's term counts, once: they make the table's background and then each restaurant's terms
        self.counts = {g.id: contrast.TermCounts.of(selection.for_validation(g), settings.max_ngram)
                       for g in groups} if settings.enabled else {}
        self.background = contrast.table_background(self.counts.values(), settings) if settings.enabled else None
        self._done: dict[str, dict[str, contrast.GroupContrast]] = {}

    def of(self, group: ReviewGroup) -> contrast.GroupContrast:
        restaurant = None if group.business_id is None else str(group.business_id)
        if restaurant is None or not self.settings.enabled:
            return contrast.group_contrast(group, None, self.selection, self.settings)
        if restaurant not in self._done:
            self._done[restaurant] = contrast.restaurant_contrast(self.restaurants[restaurant], self.selection,
                                                                  self.settings, self.background, self.counts)
        return self._done[restaurant][group.id]

    def specificity(self, summaries: dict[str, str]) -> dict:
        return contrast.table_specificity((g for r in self.restaurants.values() for g in r), summaries, self.selection)


def run_local(cfg: DictConfig, output: str) -> tuple[Tally, TableContrast]:
    """Summarize the groups of `cfg.data` not yet in `output`; returns the tally and the table's contrast (for the
    specificity report of the whole output)."""
    tally = Tally()
    groups, skipped = ReviewTable.from_config(cfg.data).groups()  # unknown columns fail here, naming the file
    tally.update({("skipped", reason): n for reason, n in skipped.items()})
    tally["rows", "read"] = len(groups)
    start = time.perf_counter()
    settings = contrast_settings(cfg)
    table_contrast = TableContrast(groups, ReviewSelection.from_config(cfg.data), settings)
    tally["time", "contrast_ms"] = round((time.perf_counter() - start) * 1000)
    runtime = InferenceRuntime.from_config(cfg)
    provenance = provenance_of(runtime, settings)  # the weights' hash from the export's files: nothing loads yet
    done, found = done_ids(output)
    check_same_provenance(found, provenance, output)
    todo = [g for g in groups if g.id not in done]
    tally["rows", "already_done"] = len(groups) - len(todo)
    if not todo:
        if found and any(f["path"] != output for f in found):
            merge(output)  # a run killed after its last part: only the merge was missing
        log.info("nothing to do: all %d review groups of data.path are in %s", len(groups), output)
        write_dead_letters(failed_path(output), [])
        return tally, table_contrast

    info = runtime.load().info
    features = runtime.encode(todo)
    # longest first: similar lengths share a batch (little padding), and memory peaks in the first batch
    order = sorted(range(len(todo)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
    os.makedirs(parts_dir(output), exist_ok=True)
    log.info("summarizing %d review groups (%d already done) on %s/%s into %s", len(todo),
             tally["rows", "already_done"], info["device"], info["dtype"], output)
    failed: list[dict] = []
    contrast_seconds = 0.0
    start = time.perf_counter()  # rows/s counts generation, not loading
    with tqdm(total=len(todo), unit="row", desc="summarize", disable=None if cfg.progress else True) as bar:
        for part_index, part_start in enumerate(range(0, len(order), cfg.part_size)):
            part = order[part_start:part_start + cfg.part_size]
            rows = []
            for b in range(0, len(part), cfg.batch_size):
                batch = part[b:b + cfg.batch_size]
                results = summarize_batch(runtime, [features[i] for i in batch])
                contrast_start = time.perf_counter()
                for i, result in zip(batch, results, strict=True):
                    if isinstance(result, Failure):
                        failed.append(dead_letter(todo[i], result))
                    else:
                        rows.append(output_row(todo[i], result, provenance, table_contrast.of(todo[i])))
                contrast_seconds += time.perf_counter() - contrast_start
                bar.update(len(batch))
            write_part(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), parts_dir(output), part_index)
            tally["rows", "generated"] += len(rows)
    tally["time", "generate_ms"] = round((time.perf_counter() - start - contrast_seconds) * 1000)
    tally["time", "contrast_ms"] += round(contrast_seconds * 1000)
    written = merge(output)
    write_dead_letters(failed_path(output), failed)
    tally["rows", "failed"] = len(failed)
    log.info("wrote %s: %d rows (%d new)", output, written, tally["rows", "generated"])
    return tally, table_contrast
