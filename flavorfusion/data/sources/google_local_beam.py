"""`prepare engine=beam`: the Google Local rules (`flavorfusion.data.sources.google_local`, the same functions
`engine=local` runs) as an Apache Beam graph, so both engines write the same rows and the same report:

    meta files ─ ScanMeta (per file) ─ MergeMeta ──────────────┐ BusinessIndex, a side input
    review files ─ ReadLines (batches of lines) ─ Reshuffle ─ ScanReviews ─ GroupByKey(business)
        ─ CapReviews (per restaurant, in line order) ─ BatchElements ─ GroupRows ─ WriteToParquetBatched
    every step ─ tally (side output) ─ Flatten  -> the engine sums it into the report

Gzip files cannot be split, so one worker reads each file; the reshuffle right after the read
spreads the parsing over all workers. Lines carry their place in the input (file index, line
number), so the cap's tie-break and the first of duplicate lines are the local engine's.
The engine (`flavorfusion.engines.beam`) runs the graph and publishes the shards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput
from omegaconf import OmegaConf

from flavorfusion.data.jsonlines import line_reader, read_errors
from flavorfusion.data.record import SCHEMA
from flavorfusion.data.report import input_tally
from flavorfusion.data.sources.google_local import (
    ORDER,
    BusinessIndex,
    RecentReviews,
    group_rows,
    line_order,
    merge_indexes,
    scan_meta,
    scan_reviews,
)
from flavorfusion.errors import DataError
from flavorfusion.tally import Tally

if TYPE_CHECKING:
    pass

@dataclass(frozen=True)
class PrepareWorkerSettings:
    """The rules' settings as plain values; the grouping and the language identifier are rebuilt on
    each worker from their config (their models are not pickled)."""

    categories: frozenset[str]
    min_chars: int
    max_chars: int
    cap: int | None
    grouping_cfg: dict
    language_id_cfg: dict | None
    lines_per_batch: int
    businesses_per_batch: int
    num_shards: int

    @classmethod
    def from_job(cls, job) -> PrepareWorkerSettings:
        """From the prepare job: its source, its config's `grouping` and `source.language_id`, its engine."""
        cfg, source = job.cfg, job.source
        return cls(
            categories=source.categories,
            min_chars=source.min_chars,
            max_chars=source.max_chars,
            cap=source.max_reviews,
            grouping_cfg=OmegaConf.to_container(cfg.grouping, resolve=True),
            language_id_cfg=OmegaConf.to_container(cfg.source.language_id, resolve=True)
            if cfg.source.get("language_id") is not None
            else None,
            lines_per_batch=cfg.engine.lines_per_batch,
            businesses_per_batch=cfg.engine.businesses_per_batch,
            num_shards=job.engine.num_shards,
        )


def expand_prepare(pipeline: beam.Pipeline, files: dict[str, list[str]], settings: PrepareWorkerSettings,
                   shards: str) -> beam.PCollection:
    """The prepare graph on `pipeline`: Parquet shards `<shards>-*.parquet`; returns the PCollection of tallies."""
    p = pipeline
    index = (
        p
        | "ListMetaFiles" >> beam.Create(list(enumerate(files["meta"])))
        | "SpreadMetaFiles" >> beam.Reshuffle()
        | "ScanMeta" >> beam.Map(_scan_meta_file, categories=settings.categories)
        | "CollectMeta" >> beam.combiners.ToList()
        | "MergeMeta" >> beam.Map(_merge_in_file_order)
    )
    index_side = beam.pvalue.AsSingleton(index)
    scanned = (
        p
        | "ListReviewFiles" >> beam.Create(list(enumerate(files["reviews"])))
        | "SpreadReviewFiles" >> beam.Reshuffle()
        | "ReadLines" >> beam.ParDo(ReadLineBatches(settings.lines_per_batch))
        | "SpreadLines" >> beam.Reshuffle()  # gzip reads are one worker per file: parse everywhere
        | "ScanReviews" >> beam.ParDo(ScanReviews(settings), index_side).with_outputs("tally", main="candidates")
    )
    capped = (
        scanned.candidates
        | "ByBusiness" >> beam.GroupByKey()
        | "CapReviews" >> beam.ParDo(CapReviews(settings.cap)).with_outputs("tally", main="restaurants")
    )
    grouped = (
        capped.restaurants
        | "BatchRestaurants" >> beam.BatchElements(min_batch_size=1, max_batch_size=settings.businesses_per_batch)
        | "GroupRows" >> beam.ParDo(GroupRows(settings), index_side).with_outputs("tally", main="tables")
    )
    _ = grouped.tables | "WriteParquet" >> beam.io.WriteToParquetBatched(
        shards,
        schema=SCHEMA,
        codec="zstd",
        file_name_suffix=".parquet",
        num_shards=settings.num_shards,
    )
    return (index | "MetaTally" >> beam.Map(BusinessIndex.tally), scanned.tally, capped.tally,
            grouped.tally) | "AllTallies" >> beam.Flatten()


def _scan_meta_file(file: tuple[int, str], categories: frozenset[str]) -> tuple[int, BusinessIndex]:
    file_index, url = file
    with _open_lines(url) as lines:
        return file_index, scan_meta(lines, categories)


def _merge_in_file_order(parts: list[tuple[int, BusinessIndex]]) -> BusinessIndex:
    return merge_indexes(index for _, index in sorted(parts, key=lambda part: part[0]))


@contextlib.contextmanager
def _open_lines(url: str) -> Iterator[Iterator[bytes]]:
    """The lines of a file through Beam's filesystems (local, gs://), decompressed by its name."""
    try:
        raw = FileSystems.open(url, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as err:  # Beam wraps a missing file in its own error types
        raise DataError(f"cannot open {url}: {err}") from None
    with raw, read_errors(url):
        yield line_reader(raw, url)


class ReadLineBatches(beam.DoFn):
    """(file index, url) -> (line order of the first line, [lines]) in batches of `lines_per_batch`."""

    def __init__(self, lines_per_batch: int):
        self.lines_per_batch = lines_per_batch

    def process(self, element: tuple[int, str]) -> Iterator[tuple[int, list[bytes]]]:
        file_index, url = element
        order = line_order(file_index)
        with _open_lines(url) as lines:
            while batch := list(islice(lines, self.lines_per_batch)):
                yield order, batch
                order += len(batch)


class ScanReviews(beam.DoFn):
    """A batch of review lines -> (gmap_id, (user_id, text, review)) per candidate; tally on the side."""

    def __init__(self, settings: PrepareWorkerSettings):
        self.min_chars, self.max_chars = settings.min_chars, settings.max_chars
        self._index: BusinessIndex | None = None

    def process(self, batch: tuple[int, list[bytes]], index: BusinessIndex):
        if self._index is not index:  # the side input, as byte lookups once per worker
            self._index = index
            self._restaurants, self._others = index.lookups(str)
        first_order, lines = batch
        candidates: list = []
        dropped: dict[str, int] = {}
        scan_reviews(
            lines,
            first_order=first_order,
            restaurants=self._restaurants,
            others=self._others,
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            dropped=dropped,
            accept=lambda gmap_id, user_id, text, review: candidates.append((gmap_id, (user_id, text, review))),
        )
        yield from candidates
        yield TaggedOutput("tally", input_tally("reviews", dropped.pop("lines", 0), 0, dropped))


class CapReviews(beam.DoFn):
    """(gmap_id, candidates) -> (gmap_id, kept reviews newest first): candidates in line order
    through the same RecentReviews as engine=local."""

    def __init__(self, cap: int | None):
        self.cap = cap

    def process(self, element: tuple[str, Iterable[tuple]]):
        gmap_id, candidates = element
        recent = RecentReviews(gmap_id, self.cap)
        for user_id, text, review in sorted(candidates, key=lambda c: c[2][ORDER]):
            recent.add(user_id, text, review)
        yield TaggedOutput("tally", recent.tally())
        if recent.reviews:
            yield gmap_id, recent.newest_first()


class GroupRows(beam.DoFn):
    """A batch of restaurants -> Arrow tables of review-group rows (`group_rows`); tally on the side."""

    def __init__(self, settings: PrepareWorkerSettings):
        self.grouping_cfg, self.language_id_cfg = settings.grouping_cfg, settings.language_id_cfg

    def setup(self) -> None:
        from hydra.utils import instantiate

        self.grouping = instantiate(self.grouping_cfg)
        self.language_id = None if self.language_id_cfg is None else instantiate(self.language_id_cfg)

    def process(self, batch: list[tuple[str, list[tuple]]], index: BusinessIndex):
        restaurants = [(gmap_id, *index.restaurants[gmap_id], reviews) for gmap_id, reviews in batch]
        tally = Tally()
        for table in group_rows(restaurants, self.grouping, self.language_id, tally):
            tally["written", "rows"] += table.num_rows
            tally["written", "reviews"] += pc.sum(table.column("n_reviews")).as_py() or 0
            yield table
        yield TaggedOutput("tally", tally)


