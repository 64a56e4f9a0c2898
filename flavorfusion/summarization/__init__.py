"""Summaries for every review group of a table: one row per (restaurant, cultural group), batched by length.
`python -m flavorfusion.summarize` runs it, on an engine (`flavorfusion.engines`):

- `engine=local` writes one Parquet file in parts, so that a killed run resumes where it stopped;
- `engine=beam` runs `summarization/beam.py` (RunInference) on Beam's local runner or on Dataflow GPU workers
  and writes a directory of Parquet shards with the same columns and provenance.

Both batch groups of similar length, retry a failed batch item by item (`summarize_batch`), and write the rows
that still fail, each with its error line, to a dead-letter output that the report counts: `<output>.failed.jsonl`
(local) or `<output>/_failed/` (beam).

engine=local: parts live in `<output>.parts/`, each written under a temporary name and renamed, so a killed run loses at
most the part it was generating. When every group has its summary, the parts (and a previous output, if
any) are merged into `<output>` (Parquet), again through a temporary file, and the parts are removed. A
rerun skips the groups already in `<output>` or in a part: after a complete run it writes nothing.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from flavorfusion import contrast
from flavorfusion.checks import check_summarize_output, validate_summarize
from flavorfusion.config.contrast import ContrastConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.report import Tally
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.engines import FAILED_DIR
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output
from flavorfusion.models.inference import inference_summarizer
from flavorfusion.runs import build

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


@dataclass
class SummarizeReport:
    """What a run did: rows already done, generated now, skipped (by reason), failed (in the dead-letter output),
    and where the output is."""

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
                   seconds, tally["rows", "failed"], dead_letters if tally["rows", "failed"] else None)

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


def parts_dir(output: str) -> str:
    return f"{output}.parts"


def written_files(output: str) -> list[str]:
    """The output (if any) and every complete part, oldest first."""
    return ([output] if os.path.isfile(output) else []) + sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))


def weights_sha256(model: torch.nn.Module) -> str:
    """A content hash of the weights (names, dtypes, shapes and bytes), whatever the model was loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# the provenance columns a resumed run must share with what is already written
PROVENANCE_CHECKED = ("model_sha256", "generation", "contrast")


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


def summaries_of(output: str) -> dict[str, str]:
    """id -> summary of a summarize output: one file, or a directory of shards (local or object storage)."""
    import fsspec
    import pyarrow.dataset as ds

    fs, location = fsspec.core.url_to_fs(output)
    table = ds.dataset(location, filesystem=fs, format="parquet").to_table(columns=["id", "summary"])
    return dict(zip(table.column("id").to_pylist(), table.column("summary").to_pylist(), strict=True))


def check_same_provenance(provenance: list[dict], expected: dict, output: str) -> None:
    for found in provenance:
        if any(found[key] != expected[key] for key in PROVENANCE_CHECKED):
            raise ConfigError(f"output={output}: {found['path']} was written by another model or other generation "
                              "settings (or contrast settings); give a new output or remove the old one")


def output_row(group: ReviewGroup, summary: str, provenance: dict, group_contrast: contrast.GroupContrast) -> dict:
    return {"id": group.id, **{k: getattr(group, k) for k in CARRIED}, "summary": summary,
            **group_contrast.columns(), **provenance}


def dead_letter(group: ReviewGroup, failure: Failure) -> dict:
    """A row that failed, as the dead-letter output keeps it: the group's keys and the error line."""
    return {"id": group.id, **{k: getattr(group, k) for k in ("business_id", "name", "group")}, "error": failure.error}


@dataclass(frozen=True)
class Failure:
    """A group that could not be summarized, and why (one line)."""

    error: str


def error_line(err: BaseException) -> str:
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__


def summarize_batch(summarizer, features: list[dict], generation: dict) -> list[str | Failure]:
    """Summaries of a batch; if the batch fails, each group is tried alone, so a bad group fails alone (and a
    batch too big for the accelerator's memory becomes single groups)."""
    try:
        return summarizer.generate(features, **generation)
    except Exception as err:  # noqa: BLE001 - a failing group goes to the dead letters, not the whole run down
        if len(features) == 1:
            log.warning("a review group failed: %s", error_line(err))
            return [Failure(error_line(err))]
    return [result for feature in features for result in summarize_batch(summarizer, [feature], generation)]


def generation_settings(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg.generation, resolve=True)


def provenance_of(cfg: DictConfig, model) -> dict:
    """The provenance columns: the model source, its weights' hash (as loaded, before placing: the same weights
    give the same hash on any device and dtype), the generation settings and the contrast settings."""
    return {"model": str(cfg.model.name_or_path), "model_sha256": weights_sha256(model),
            "generation": json.dumps(generation_settings(cfg), sort_keys=True),
            "contrast": json.dumps(OmegaConf.to_container(cfg.contrast, resolve=True), sort_keys=True)}


def contrast_settings(cfg: DictConfig) -> ContrastConf:
    return OmegaConf.to_object(cfg.contrast)


def contrast_path(output: str) -> str:
    """Where the specificity report goes: beside the output (`summaries.parquet` -> `summaries.contrast.json`,
    `summaries/` -> `summaries.contrast.json`)."""
    base = output.rstrip("/")
    return f"{os.path.splitext(base)[0] if base.endswith('.parquet') else base}.contrast.json"


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


@dataclass
class SummarizeJob:
    """Review groups -> one summary each, as an engine runs it (`flavorfusion.engines.Job`)."""

    cfg: DictConfig
    name: str = "summarize"
    schema: pa.Schema = OUTPUT_SCHEMA
    beam_settings: Any = None  # engine=beam: `summarization.beam.BeamSummarize`, checked by the driver
    table_contrast: TableContrast | None = None  # engine=local: set by run_local

    def run_local(self, output: str) -> Tally:
        """Resumable: the groups already in `output` or in a part are skipped."""
        from flavorfusion.models.loading import load_pretrained

        cfg, tally = self.cfg, Tally()
        groups, skipped = ReviewTable.from_config(cfg.data).groups()  # unknown columns fail here, naming the file
        tally.update({("skipped", reason): n for reason, n in skipped.items()})
        tally["rows", "read"] = len(groups)
        start = time.perf_counter()
        self.table_contrast = TableContrast(groups, ReviewSelection.from_config(cfg.data), contrast_settings(cfg))
        contrast_seconds = time.perf_counter() - start
        model, tokenizer = load_pretrained(cfg.model.name_or_path)
        provenance = provenance_of(cfg, model)
        done, found = done_ids(output)
        check_same_provenance(found, provenance, output)
        todo = [g for g in groups if g.id not in done]
        tally["rows", "already_done"] = len(groups) - len(todo)
        if not todo:
            if found and any(f["path"] != output for f in found):
                merge(output)  # a run killed after its last part: only the merge was missing
            log.info("nothing to do: all %d review groups of data.path are in %s", len(groups), output)
            write_dead_letters(failed_path(output), [])
            return tally

        summarizer, device, dtype, _ = inference_summarizer(model, tokenizer, cfg.data, device=cfg.device,
                                                            dtype=cfg.dtype, attention=cfg.model.attention)
        generation = generation_settings(cfg)
        features = summarizer.encode(todo)
        # longest first: similar lengths share a batch (little padding), and memory peaks in the first batch
        order = sorted(range(len(todo)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
        os.makedirs(parts_dir(output), exist_ok=True)
        log.info("summarizing %d review groups (%d already done) on %s/%s into %s", len(todo),
                 tally["rows", "already_done"], device.type, str(dtype).removeprefix("torch."), output)
        failed: list[dict] = []
        start = time.perf_counter()  # rows/s counts generation, not loading
        with tqdm(total=len(todo), unit="row", desc="summarize", disable=None if cfg.progress else True) as bar:
            for part_index, part_start in enumerate(range(0, len(order), cfg.part_size)):
                part = order[part_start:part_start + cfg.part_size]
                rows = []
                for b in range(0, len(part), cfg.batch_size):
                    batch = part[b:b + cfg.batch_size]
                    results = summarize_batch(summarizer, [features[i] for i in batch], generation)
                    contrast_start = time.perf_counter()
                    for i, result in zip(batch, results, strict=True):
                        if isinstance(result, Failure):
                            failed.append(dead_letter(todo[i], result))
                        else:
                            rows.append(output_row(todo[i], result, provenance, self.table_contrast.of(todo[i])))
                    contrast_seconds += time.perf_counter() - contrast_start
                    bar.update(len(batch))
                write_part(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), parts_dir(output), part_index)
                tally["rows", "generated"] += len(rows)
        tally["time", "generate_ms"] = round((time.perf_counter() - start - contrast_seconds) * 1000)
        tally["time", "contrast_ms"] = round(contrast_seconds * 1000)
        written = merge(output)
        write_dead_letters(failed_path(output), failed)
        tally["rows", "failed"] = len(failed)
        log.info("wrote %s: %d rows (%d new)", output, written, tally["rows", "generated"])
        return tally

    def expand(self, pipeline, shards: str):
        from flavorfusion.summarization.beam import expand_summarize

        return expand_summarize(pipeline, self.beam_settings, shards)

    def specificity(self, output: str) -> dict:
        """The specificity report of what `output` holds: engine=local computes it from the output's summaries and
        the table's reviews; engine=beam's workers wrote each restaurant's record under `<output>/_contrast/`."""
        if self.table_contrast is not None:
            return self.table_contrast.specificity(summaries_of(output))
        from flavorfusion.summarization.beam import read_specificity_records

        return contrast.specificity_report(read_specificity_records(output))


def summarize(cfg: DictConfig) -> SummarizeReport:
    validate_summarize(cfg)  # before the model loads or anything generates
    engine = build(cfg, "engine")
    check_summarize_output(cfg, directory=engine.writes_directory)
    output = str(cfg.output)
    beam_settings = None
    if engine.writes_directory:
        from flavorfusion.summarization.beam import BeamSummarize

        # the driver checks what workers will read: the input's files and columns, and that the model loads
        beam_settings = BeamSummarize.from_config(cfg, engine)
    job = SummarizeJob(cfg, beam_settings=beam_settings)
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
    report.tally = tally
    print(report.line())
    return report
