"""`summarize engine=beam`: the summarize rules (`summarization/rules.py`: the same encoding, batch retry, rows
and provenance as `engine=local`) as an Apache Beam graph around `RunInference`:

    group files ─ Reshuffle ─ ReadGroups (per file) ─ Encode (tokenizer only)
        ─ RunInference(GroupSummaryHandler): batches keyed by length bucket, one model per worker process
        ─ KeyByRestaurant ─ GroupByRestaurant (GroupByKey on business_id)
        ─ ToRows (contrast: terms, quotes, specificity) ─┬─ rows ─ BatchRows ─ WriteToParquetBatched   part-*.parquet
                                                          ├─ failed ─ WriteToText        _failed/part-*.jsonl (dead letters)
                                                          └─ contrast ─ WriteToText      _contrast/part-*.jsonl
    ReadGroups ─ SelectedReviews ─ TableBackground (the whole table's term counts) ─> ToRows, as a side input
    ReadGroups, ToRows ─ tally (side output) ─> the engine, into the report

`RunInference` loads the model once per worker process and shares it across the process's threads; its
`BatchElements` keys groups by a bucket of their encoded length, so long and short groups don't share padding.
The driver builds one `InferenceRuntime` (the model source parsed once, the weights hashed from the export's files
without loading it) and ships it, unloaded, to the encoding step and the model handler, which load what they need.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.pvalue import TaggedOutput
from omegaconf import OmegaConf

from flavorfusion import contrast
from flavorfusion.config.contrast import ContrastConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.engines import FAILED_DIR
from flavorfusion.models.runtime import InferenceRuntime
from flavorfusion.summarization.rules import (
    OUTPUT_SCHEMA,
    Failure,
    contrast_settings,
    dead_letter,
    output_row,
    provenance_of,
    summarize_batch,
)
from flavorfusion.tally import Tally

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# how long a length bucket may wait for a full batch; in a batch pipeline a bucket is also flushed when input ends
MAX_BATCH_WAIT_S = 30
ROWS_PER_TABLE = 1000
# each restaurant's specificity record, beside the shards (a name readers of the shards skip)
CONTRAST_DIR = "_contrast"


class EncodedGroup(NamedTuple):
    group: ReviewGroup
    input_ids: list[int]


def encoded_length(element: EncodedGroup) -> int:
    return len(element.input_ids)


def length_buckets(max_source_length: int, shortest: int = 64) -> list[int]:
    """Bucket boundaries in powers of two up to the model's source limit: a batch holds groups whose lengths are
    within a factor of two."""
    boundaries, length = [], shortest
    while length < max_source_length:
        boundaries.append(length)
        length *= 2
    return boundaries or [max_source_length]


@dataclass(frozen=True)
class SummarizeWorkerSettings:
    """The summarize settings workers need, as picklable values; the driver checked them (files, columns, model)."""

    files: tuple[str, ...]
    table: ReviewTable  # how to read the files; each worker reads one
    runtime: InferenceRuntime  # unloaded: each worker loads its own
    batch_size: int
    buckets: tuple[int, ...]
    provenance: dict
    num_shards: int
    contrast: ContrastConf

    @property
    def selection(self) -> ReviewSelection:
        return ReviewSelection.from_config(OmegaConf.create(self.runtime.data))

    @classmethod
    def from_job(cls, job) -> SummarizeWorkerSettings:
        """From the summarize job: its config's `data`, `model`, `generation`, `contrast` and its engine."""
        cfg, engine = job.cfg, job.engine
        table = ReviewTable.from_config(cfg.data)
        files, fmt, _ = table.checked_files()  # no file, or a column missing from one, fails here
        runtime = InferenceRuntime.from_config(cfg)
        if engine.runner == "DataflowRunner" and runtime.source.kind == "local":
            log.warning("model.name_or_path=%s is a local directory: Dataflow workers read it at that path only if "
                        "their image has it; give gs://..., a Hub name or a wandb: artifact", runtime.source)
        settings = contrast_settings(cfg)
        # the tokenizer and config load and the weights' files are hashed here, before any worker starts
        return cls(
            files=tuple(files),
            table=replace(table, format=fmt, streaming=True, num_proc=None),
            runtime=runtime,
            batch_size=cfg.batch_size,
            buckets=tuple(length_buckets(runtime.source_limit)),
            provenance=provenance_of(runtime, settings),
            num_shards=engine.num_shards,
            contrast=settings,
        )


def expand_summarize(pipeline: beam.Pipeline, settings: SummarizeWorkerSettings, shards: str) -> beam.PCollection:
    """The summarize graph: Parquet shards `<shards>-*.parquet`, dead letters under `_failed/` beside them;
    returns the PCollection of tallies."""
    read = (
        pipeline
        | "ListGroupFiles" >> beam.Create(list(settings.files))
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadGroups" >> beam.ParDo(ReadGroups(settings.table)).with_outputs("tally", main="groups")
    )
    background = (
        read.groups
        | "SelectedReviews" >> beam.Map(lambda group, selection: selection.for_validation(group), settings.selection)
        | "TableBackground" >> beam.CombineGlobally(TableBackground(settings.contrast))
    )
    keyed = (
        read.groups
        | "Encode" >> beam.ParDo(EncodeGroups(settings))
        | "Summarize" >> RunInference(GroupSummaryHandler(settings))
        | "KeyByRestaurant" >> beam.ParDo(KeyByRestaurant()).with_outputs("alone", main="keyed")
    )
    restaurants = (
        (keyed.keyed | "GroupByRestaurant" >> beam.GroupByKey(), keyed.alone)
        | "Restaurants" >> beam.Flatten()
    )
    summarized = restaurants | "ToRows" >> beam.ParDo(
        ToRows(settings), background=beam.pvalue.AsSingleton(background)
    ).with_outputs("failed", "contrast", "tally", main="rows")
    _ = (
        summarized.rows
        | "BatchRows" >> beam.BatchElements(min_batch_size=1, max_batch_size=ROWS_PER_TABLE)
        | "ToTables" >> beam.Map(lambda rows: pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA))
        | "WriteParquet" >> beam.io.WriteToParquetBatched(shards, schema=OUTPUT_SCHEMA, codec="zstd",
                                                          file_name_suffix=".parquet", num_shards=settings.num_shards)
    )
    directory, prefix = shards.rsplit("/", 1)
    _ = summarized.failed | "WriteDeadLetters" >> beam.io.WriteToText(f"{directory}/{FAILED_DIR}/{prefix}",
                                                                      file_name_suffix=".jsonl")
    _ = summarized.contrast | "WriteSpecificity" >> beam.io.WriteToText(f"{directory}/{CONTRAST_DIR}/{prefix}",
                                                                         file_name_suffix=".jsonl")
    return (read.tally, summarized.tally) | "AllTallies" >> beam.Flatten()


class TableBackground(beam.CombineFn):
    """The whole table's term counts (`contrast.table_background`), summed across workers."""

    def __init__(self, settings: ContrastConf):
        self.settings = settings

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, accumulator: Counter, reviews: list[str]) -> Counter:
        if self.settings.enabled:
            accumulator.update(contrast.TermCounts.of(reviews, self.settings.max_ngram).counts)
        return accumulator

    def merge_accumulators(self, accumulators) -> Counter:
        total = Counter()
        for accumulator in accumulators:
            total.update(accumulator)
        return total

    def extract_output(self, accumulator: Counter) -> Counter:
        return accumulator


class KeyByRestaurant(beam.DoFn):
    """A summarized group -> (business_id, result); one without a business_id goes on alone (None, [result])."""

    def process(self, result: PredictionResult):
        business_id = result.example.group.business_id
        if business_id is None:
            yield TaggedOutput("alone", (None, [result]))
        else:
            yield str(business_id), result


def read_specificity_records(output: str) -> list[contrast.RestaurantSpecificity]:
    """The restaurants' specificity records that `ToRows` wrote under `<output>/_contrast/`."""
    import fsspec

    fs, location = fsspec.core.url_to_fs(output)
    records = []
    for path in sorted(fs.glob(f"{location.rstrip('/')}/{CONTRAST_DIR}/*.jsonl")):
        with fs.open(path, "r") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return [contrast.RestaurantSpecificity(r["business_id"], r["groups"]) for r in records]


class ReadGroups(beam.DoFn):
    """A file of review groups -> the records (as `engine=local` reads them); skipped rows counted by reason."""

    def __init__(self, table: ReviewTable):
        self.table = table

    def process(self, path: str) -> Iterator[Any]:
        skipped: Counter = Counter()
        tally = Tally()
        for group in replace(self.table, path=path).records(skipped):
            tally["rows", "read"] += 1
            yield group
        tally.update({("skipped", reason): n for reason, n in skipped.items()})
        yield TaggedOutput("tally", tally)


class EncodeGroups(beam.DoFn):
    """A record -> (record, input ids), with the model's tokenizer and limits (its weights are not loaded)."""

    def __init__(self, settings: SummarizeWorkerSettings):
        self.runtime = settings.runtime

    def setup(self) -> None:
        self.runtime.load_encoder()

    def process(self, group: ReviewGroup) -> Iterator[EncodedGroup]:
        yield EncodedGroup(group, self.runtime.encode([group])[0]["input_ids"])


class GroupSummaryHandler(ModelHandler):
    """RunInference's model handler around the inference runtime, loaded (fp or quantized exports) and placed as
    `summarize engine=local` loads and places it."""

    def __init__(self, settings: SummarizeWorkerSettings):
        super().__init__(min_batch_size=1, max_batch_size=settings.batch_size, max_batch_duration_secs=MAX_BATCH_WAIT_S,
                         batch_length_fn=encoded_length, batch_bucket_boundaries=list(settings.buckets))
        self.settings = settings

    def load_model(self) -> InferenceRuntime:
        runtime = copy.copy(self.settings.runtime).load()  # a copy: the settings' runtime stays unloaded
        log.info("loaded %s on %s", runtime.source, runtime.info["device"])
        return runtime

    def run_inference(self, batch, model: InferenceRuntime, inference_args=None) -> list[PredictionResult]:
        results = summarize_batch(model, [{"input_ids": e.input_ids} for e in batch])
        return [PredictionResult(example, result) for example, result in zip(batch, results, strict=True)]

    def get_num_bytes(self, batch) -> int:
        return sum(4 * len(e.input_ids) for e in batch)  # token ids, without pickling the batch

    def get_metrics_namespace(self) -> str:
        return "flavorfusion.summarize"


class ToRows(beam.DoFn):
    """A restaurant's summarized groups -> output rows with their contrast (terms and quotes against the restaurant's
    other groups) and the restaurant's specificity record; a failure -> a dead letter with its error line."""

    def __init__(self, settings: SummarizeWorkerSettings):
        self.provenance, self.contrast, self.selection = settings.provenance, settings.contrast, settings.selection

    def process(self, element: tuple[str | None, Iterable[PredictionResult]], background: Counter):
        business_id, results = element
        results = sorted(results, key=lambda r: r.example.group.id)
        groups = [r.example.group for r in results]
        contrasts = (contrast.restaurant_contrast(groups, self.selection, self.contrast, background)
                     if business_id is not None and self.contrast.enabled else {})
        summaries = {}
        for result in results:
            group = result.example.group
            if isinstance(result.inference, Failure):
                yield TaggedOutput("failed", json.dumps(dead_letter(group, result.inference), ensure_ascii=False))
                yield TaggedOutput("tally", Tally({("rows", "failed"): 1}))
                continue
            summaries[group.id] = result.inference
            found = contrasts.get(group.id) or contrast.group_contrast(group, None, self.selection, self.contrast)
            yield output_row(group, result.inference, self.provenance, found)
            yield TaggedOutput("tally", Tally({("rows", "generated"): 1}))
        if business_id is not None and self.contrast.enabled:
            record = contrast.specificity_of(business_id, groups, summaries, self.selection)
            if record is not None:
                yield TaggedOutput("contrast", json.dumps(record.as_dict(), ensure_ascii=False))
