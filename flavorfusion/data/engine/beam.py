"""`engine=beam`: `prepare` as an Apache Beam pipeline, on the in-process Python runner or on Dataflow.

    python -m flavorfusion.prepare engine=beam source.reviews='data/review-*.json.gz' \\
        source.meta='data/meta-*.json.gz' output=data/groups           # a directory of Parquet shards

The pipeline runs the rules of `flavorfusion.data.sources.google_local` (the same functions
`engine=local` runs), so both engines write the same rows and the same report:

    meta files ─ ScanMeta (per file) ─ MergeMeta ──────────────┐ BusinessIndex, a side input
    review files ─ ReadLines (batches of lines) ─ Reshuffle ─ ScanReviews ─ GroupByKey(business)
        ─ CapReviews (per restaurant, in line order) ─ BatchElements ─ GroupRows ─ WriteToParquetBatched
    every step ─ tally (side output) ─ SumTallies ─ WriteTally  -> the report

Gzip files cannot be split, so one worker reads each file; the reshuffle right after the read
spreads the parsing over all workers. Lines carry their place in the input (file index, line
number), so the cap's tie-break and the first of duplicate lines are the local engine's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput
from omegaconf import OmegaConf

from flavorfusion.data.engine import PrepareTask
from flavorfusion.data.jsonlines import line_reader, read_errors
from flavorfusion.data.record import SCHEMA
from flavorfusion.data.report import PrepareReport, Tally, input_tally, report_path
from flavorfusion.data.sources.google_local import (
    ORDER,
    BusinessIndex,
    GoogleLocalSource,
    RecentReviews,
    group_rows,
    line_order,
    merge_indexes,
    refuse_translation,
    scan_meta,
    scan_reviews,
)
from flavorfusion.data.writer import output_file
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output

if TYPE_CHECKING:
    from omegaconf import DictConfig


TALLY_FILE = "_tally.json"
SHARD_PREFIX = "part"
# Dataflow option keys whose values are required, with an example for the error message
REQUIRED_DATAFLOW = {"project": "my-project", "region": "us-central1", "temp_location": "gs://BUCKET/tmp"}


class BeamEngine:
    """`engine=beam` (conf/engine/beam.yaml); Dataflow options are `engine.dataflow.*`, passed to Beam
    as its own flags (`--project`, `--machine_type`, ...)."""

    name = "beam"
    writes_directory = True

    def __init__(
        self,
        runner: str = "FnApiRunner",
        dry_run: bool = False,
        lines_per_batch: int = 10_000,
        businesses_per_batch: int = 500,
        num_shards: int = 0,
        direct_num_workers: int = 1,
        direct_running_mode: str = "in_memory",
        dataflow: dict[str, Any] | None = None,
    ):
        # ranges and choices: flavorfusion.config.engine.BeamEngineConf; Beam's own options: _check_dataflow
        self.runner = runner
        self.dry_run = bool(dry_run)
        self.lines_per_batch = int(lines_per_batch)
        self.businesses_per_batch = int(businesses_per_batch)
        self.num_shards = int(num_shards)
        self.direct_num_workers = int(direct_num_workers)
        self.direct_running_mode = direct_running_mode
        self.dataflow = {k: v for k, v in (dataflow or {}).items() if v is not None and v != []}
        if runner == "DataflowRunner":
            self._check_dataflow()

    def _check_dataflow(self) -> None:
        known = PipelineOptions(flags=[]).get_all_options()
        unknown = sorted(set(self.dataflow) - set(known))
        if unknown:  # Beam would only log that it discards them
            raise ConfigError(f"engine.dataflow.{unknown[0]} is not a Beam pipeline option "
                              "(https://cloud.google.com/dataflow/docs/reference/pipeline-options)")
        for key, example in REQUIRED_DATAFLOW.items():
            if not self.dataflow.get(key):
                raise ConfigError(f"engine.runner=DataflowRunner needs engine.dataflow.{key}, e.g. {example}")
        if not str(self.dataflow["temp_location"]).startswith("gs://"):
            raise ConfigError(
                f"engine.dataflow.temp_location={self.dataflow['temp_location']!r} must be a gs:// path"
            )
        if not any(self.dataflow.get(k) for k in ("sdk_container_image", "extra_packages", "setup_file")):
            raise ConfigError(
                "Dataflow workers need flavorfusion: set engine.dataflow.sdk_container_image (an image built "
                "from launchers/Dockerfile.beam) or engine.dataflow.extra_packages (a flavorfusion wheel)"
            )

    # -- options and runner ------------------------------------------------------------------------
    def options(self, job_name: str | None = None) -> PipelineOptions:
        flags: dict[str, Any] = {"save_main_session": False, "pickle_library": "cloudpickle"}
        if self.runner == "DataflowRunner":
            flags.update(runner="DataflowRunner", **self.dataflow)
            flags.setdefault("job_name", job_name)
            if self.dry_run:
                flags["dry_run"] = True
        else:
            flags.update(
                direct_num_workers=self.direct_num_workers, direct_running_mode=self.direct_running_mode
            )
        # flags=[]: not sys.argv, which holds Hydra overrides
        return PipelineOptions(flags=[], **{k: v for k, v in flags.items() if v is not None})

    def _pipeline(self, options: PipelineOptions) -> beam.Pipeline:
        try:
            return beam.Pipeline(runner=self._runner(), options=options)
        except ValueError as err:  # Beam's validation of the options, one problem per line
            problems = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
            raise ConfigError(f"engine.dataflow: Beam rejects the options: {problems or err}") from None

    def _runner(self):
        if self.runner == "FnApiRunner":
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            return FnApiRunner()
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

        return DataflowRunner()

    # -- the stage ---------------------------------------------------------------------------------
    def run(self, task: PrepareTask) -> dict[str, Any]:
        source, grouping, output = task.source, task.grouping, task.output
        if not isinstance(source, GoogleLocalSource):
            raise ConfigError(f"engine=beam runs source=google_local; source={source.name} fits engine=local")
        refuse_translation(task.translator)
        settings = PipelineSettings.from_config(task.cfg, source, self)
        if self.dry_run:
            return self._dry_run(settings, source)
        if task.format != "parquet":
            raise ConfigError("engine=beam writes Parquet shards: format=csv (or a .csv output) is engine=local only")

        started = time.perf_counter()
        files = source.input_files()  # a missing input fails here, before the pipeline starts
        check_replaceable(output)  # ... and an output directory holding anything but shards
        report = PrepareReport(source=source.name, output=output, format="parquet")
        report.add_input("meta", files["meta"])
        report.add_input("reviews", files["reviews"])
        with staged_output(output) as staging:
            pipeline = self._pipeline(self.options(_job_name()))
            build_pipeline(pipeline, files, settings, staging)
            with _quiet_workers(self.runner == "FnApiRunner"), _user_errors_from_workers():
                state = pipeline.run().wait_until_finish()
            if state not in ("DONE", None):
                raise DataError(f"the Beam pipeline ended {state}; nothing was written to {output}")
            tally = read_tally(f"{staging}/{TALLY_FILE}")
            report.add_tally(tally, grouping=grouping.details())
            report.check()
            FileSystems.delete([f"{staging}/{TALLY_FILE}"])
            _at_least_one_shard(staging)
            # the old report goes before the shards move: none stands beside a half-moved output
            if FileSystems.exists(report_path(output)):
                FileSystems.delete([report_path(output)])
        report.seconds = round(time.perf_counter() - started, 3)
        with output_file(report_path(output)) as tmp:  # last: a report beside shards means they are complete
            report.save(tmp)
        print(report.table())
        return report.as_dict()

    def _dry_run(self, settings: PipelineSettings, source: GoogleLocalSource) -> dict[str, Any]:
        """Build the pipeline with the Dataflow options, let Beam validate them and translate the job,
        print the graph and the options; nothing is read, written or submitted. The inputs are the
        configured patterns, not listed: listing gs:// needs credentials a dry run should not."""
        files = {"meta": _patterns(source.meta), "reviews": _patterns(source.reviews)}
        options = self.options(_job_name())
        pipeline = self._pipeline(options)
        build_pipeline(pipeline, files, settings, f"{self.dataflow['temp_location'].rstrip('/')}/dry-run")
        pipeline.run()  # DataflowRunner with --dry_run: translates the job, submits nothing
        steps = pipeline_steps(pipeline)
        shown = {k: v for k, v in options.get_all_options(drop_default=True).items() if k != "dry_run"}
        print("Dataflow dry run: the job was built and validated, and not submitted.")
        print("job graph:")
        for step in steps:
            print(f"  {step}")
        print("options:")
        for key, value in sorted(shown.items()):
            print(f"  {key}: {value}")
        return {"dry_run": True, "steps": steps, "options": shown}


# -- what workers need: plain values, picklable --------------------------------------------------------
@dataclass(frozen=True)
class PipelineSettings:
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
    def from_config(cls, cfg: DictConfig, source: GoogleLocalSource, engine: BeamEngine) -> PipelineSettings:
        return cls(
            categories=source.categories,
            min_chars=source.min_chars,
            max_chars=source.max_chars,
            cap=source.max_reviews,
            grouping_cfg=OmegaConf.to_container(cfg.grouping, resolve=True),
            language_id_cfg=OmegaConf.to_container(cfg.source.language_id, resolve=True)
            if cfg.source.get("language_id") is not None
            else None,
            lines_per_batch=engine.lines_per_batch,
            businesses_per_batch=engine.businesses_per_batch,
            num_shards=engine.num_shards,
        )


def build_pipeline(pipeline: beam.Pipeline, files: dict[str, list[str]], settings: PipelineSettings,
                   staging: str) -> None:
    """The prepare graph on `pipeline`: shards `<staging>/part-*.parquet` and `<staging>/_tally.json`."""
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
        f"{staging}/{SHARD_PREFIX}",
        schema=SCHEMA,
        codec="zstd",
        file_name_suffix=".parquet",
        num_shards=settings.num_shards,
    )
    _ = (
        (index | "MetaTally" >> beam.Map(BusinessIndex.tally), scanned.tally, capped.tally, grouped.tally)
        | "AllTallies" >> beam.Flatten()
        | "SumTallies" >> beam.CombineGlobally(_sum_tallies)
        | "WriteTally" >> beam.Map(write_tally, f"{staging}/{TALLY_FILE}")
    )


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

    def __init__(self, settings: PipelineSettings):
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

    def __init__(self, settings: PipelineSettings):
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


def _sum_tallies(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.update(tally)
    return total


def write_tally(tally: Tally, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps([[list(key), n] for key, n in sorted(tally.items())]).encode())


def read_tally(path: str) -> Tally:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return Tally({tuple(key): n for key, n in json.loads(f.read())})


def pipeline_steps(pipeline: beam.Pipeline) -> list[str]:
    """The pipeline's top-level steps in order, each with the steps it reads from."""
    proto = pipeline.to_runner_api()
    components = proto.components
    top = [child for root in proto.root_transform_ids for child in components.transforms[root].subtransforms]
    producers = {  # each PCollection -> the top-level step that makes it
        pcoll: components.transforms[step].unique_name
        for step in top
        for transform in _descendants(components, step)
        for pcoll in transform.outputs.values()
    }
    steps = []
    for step in top:
        transform = components.transforms[step]
        name = transform.unique_name
        read = {p for part in _descendants(components, step) for p in part.inputs.values()}  # side inputs too
        inputs = sorted({producers[p] for p in read if producers.get(p, name) != name})
        steps.append(name + (f"  <- {', '.join(inputs)}" if inputs else ""))
    return steps


def _descendants(components, transform_id: str):
    transform = components.transforms[transform_id]
    yield transform
    for child in transform.subtransforms:
        yield from _descendants(components, child)


# -- staging and publishing the shards -----------------------------------------------------------------
@contextlib.contextmanager
def staged_output(output: str) -> Iterator[str]:
    """A staging directory beside `output` whose shards replace `output` when the block succeeds:
    locally `io.atomic_output` (one rename), on object stores object by object. A failed block
    leaves `output` as it was and no staging behind."""
    if "://" not in output:
        with atomic_output(output) as staging:
            yield staging
        return
    parent, name = output.rsplit("/", 1)
    staging = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
        publish_objects(_shards(staging), output)
    finally:
        remove_tree(staging)


SHARD_NAME = re.compile(rf"{SHARD_PREFIX}-\d{{5}}-of-\d{{5}}\.parquet")


def _files_under(path: str) -> list[str]:
    """Every file under a directory or object prefix (none if there is nothing there)."""
    if "://" not in path:
        return [os.path.join(root, f) for root, _, files in os.walk(path) for f in files]
    try:
        return [m.path for m in FileSystems.match([f"{path}/**"])[0].metadata_list]
    except BeamIOError:
        return []


def check_replaceable(output: str) -> None:
    """`output` is new, or a directory of shards from an earlier run: it is replaced whole, so a
    directory holding anything else (inputs, other work, `.`) is refused before any work."""
    if "://" in output and "/" not in output.split("://", 1)[1].strip("/"):
        raise ConfigError(f"output={output} is a bucket: name a directory in it, e.g. {output.rstrip('/')}/groups")
    if "://" not in output and os.path.normpath(output) in (".", "..", os.sep):
        raise ConfigError(f"output={output} names no directory of its own: name one, e.g. output=data/groups")
    if "://" not in output and os.path.exists(output) and not os.path.isdir(output):
        raise ConfigError(f"output={output} is a file; engine=beam writes a directory of Parquet shards")
    others = [f for f in _files_under(output) if not SHARD_NAME.fullmatch(os.path.relpath(f, output))]
    if others:
        raise ConfigError(
            f"output={output} holds other files than Parquet shards (e.g. {os.path.relpath(others[0], output)}) "
            "and engine=beam replaces it whole: name a new directory or an earlier engine=beam output"
        )


def remove_tree(path: str) -> None:
    """Remove a directory, or every object under a prefix (an object store has no directories)."""
    if "://" not in path:
        if os.path.isdir(path):
            shutil.rmtree(path)
        return
    files = _files_under(path)
    if files:
        FileSystems.delete(files)


def _shards(directory: str) -> list[str]:
    return [m.path for m in FileSystems.match([f"{directory}/{SHARD_PREFIX}-*"])[0].metadata_list]


def _at_least_one_shard(staging: str) -> None:
    """Nothing passed the filters: still leave a readable, empty dataset."""
    if not _shards(staging):
        import pyarrow.parquet as pq

        with FileSystems.create(f"{staging}/{SHARD_PREFIX}-00000-of-00001.parquet") as f:
            pq.write_table(pa.Table.from_pylist([], schema=SCHEMA), f)


def publish_objects(shards: list[str], output: str) -> None:
    """Object stores: delete what is under `output`, then move each shard under it."""
    remove_tree(output)
    FileSystems.mkdirs(output)  # a no-op on object stores
    FileSystems.rename(shards, [f"{output}/{os.path.basename(s)}" for s in shards])


@contextlib.contextmanager
def _quiet_workers(quiet: bool) -> Iterator[None]:
    """The in-process runner logs a failing bundle's traceback before the error reaches us; the error
    itself says what went wrong (one line for bad input), so its logs are held back meanwhile."""
    logger = logging.getLogger("apache_beam")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_USER_ERROR = re.compile(r"^flavorfusion\.errors\.(DataError|ConfigError): (.+)$", re.MULTILINE)


@contextlib.contextmanager
def _user_errors_from_workers() -> Iterator[None]:
    """A DataError raised in a worker process (or on Dataflow) comes back as the text of another
    exception: raise it again as itself, one line for the user."""
    try:
        yield
    except (DataError, ConfigError):
        raise
    except Exception as err:
        found = _USER_ERROR.findall(str(err))
        if not found:
            raise
        kind, message = found[-1]
        raise (DataError if kind == "DataError" else ConfigError)(message) from None


def _patterns(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else [str(p) for p in paths]


def _job_name() -> str:
    return f"flavorfusion-prepare-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
