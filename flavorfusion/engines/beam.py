"""`engine=beam`: a stage's Beam graph on the in-process Python runner or on Google Cloud Dataflow.

    python -m flavorfusion.prepare engine=beam source.reviews='data/review-*.json.gz' \\
        source.meta='data/meta-*.json.gz' output=data/groups        # a directory of Parquet shards
    python -m flavorfusion.summarize engine=beam data.path=data/groups model.name_or_path=DIR output=data/summaries

The engine knows runners, options and outputs, not stages: it builds `job.expand(pipeline, shards)` (the graph
of `data/sources/google_local_beam.py` or `summarization/beam.py`), sums the tallies the workers send back, and
replaces `output` with the shards only when the pipeline succeeded.
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
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output
from flavorfusion.tally import Tally

if TYPE_CHECKING:
    from flavorfusion.engines import Job


TALLY_FILE = "_tally.json"
SHARD_PREFIX = "part"
# Dataflow option keys whose values are required, with an example for the error message
REQUIRED_DATAFLOW = {"project": "my-project", "region": "us-central1", "temp_location": "gs://BUCKET/tmp"}


@dataclass
class DryRun:
    """What a Dataflow dry run built: the job graph and the options it would be submitted with."""

    steps: list[str]
    options: dict[str, Any]

    def text(self) -> str:
        lines = ["Dataflow dry run: the job was built and validated, and not submitted.", "job graph:"]
        lines += [f"  {step}" for step in self.steps]
        lines += ["options:", *(f"  {key}: {value}" for key, value in sorted(self.options.items()))]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "steps": self.steps, "options": self.options}


class BeamEngine:
    """`engine=beam` (conf/engine/beam.yaml); Dataflow options are `engine.dataflow.*`, passed to Beam
    as its own flags (`--project`, `--machine_type`, ...)."""

    name = "beam"
    writes_directory = True

    def __init__(self, runner: str, dry_run: bool, num_shards: int, direct_num_workers: int,
                 direct_running_mode: str, dataflow: dict[str, Any] | None = None, **stage_settings: Any):
        # the values come from flavorfusion.config.engine.BeamEngineConf, which checks their ranges; Beam's own
        # options are checked by _check_dataflow. `stage_settings` (lines_per_batch, ...) are the stages' own:
        # their Beam graphs read them from the config, the engine knows runners, not stages
        self.runner = runner
        self.dry_run = bool(dry_run)
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

    # -- running a stage's job ---------------------------------------------------------------------
    def run(self, job: Job, output: str) -> Tally:
        """Run `job`'s graph; its shards replace `output` (a directory) only if the pipeline succeeds."""
        check_replaceable(output)  # an output directory holding anything but shards fails before any work
        with staged_output(output) as staging:
            pipeline = self._pipeline(self.options(job_name(job.name)))
            tallies = job.expand(pipeline, f"{staging}/{SHARD_PREFIX}")
            _ = (tallies | "SumTallies" >> beam.CombineGlobally(sum_tallies)
                 | "WriteTally" >> beam.Map(write_tally, f"{staging}/{TALLY_FILE}"))
            with _quiet_workers(self.runner == "FnApiRunner"), _user_errors_from_workers():
                state = pipeline.run().wait_until_finish()
            if state not in ("DONE", None):
                raise DataError(f"the Beam pipeline ended {state}; nothing was written to {output}")
            tally = read_tally(f"{staging}/{TALLY_FILE}")
            FileSystems.delete([f"{staging}/{TALLY_FILE}"])
            _at_least_one_shard(staging, job.schema)
        return tally

    def dry_run_job(self, job: Job) -> DryRun:
        """Build `job`'s graph with the Dataflow options, let Beam validate them and translate the job; nothing
        is read, written or submitted."""
        options = self.options(job_name(job.name))
        pipeline = self._pipeline(options)
        tallies = job.expand(pipeline, f"{self.dataflow['temp_location'].rstrip('/')}/dry-run/{SHARD_PREFIX}")
        _ = tallies | "SumTallies" >> beam.CombineGlobally(sum_tallies)
        pipeline.run()  # DataflowRunner with --dry_run: translates the job, submits nothing
        shown = {k: v for k, v in options.get_all_options(drop_default=True).items() if k != "dry_run"}
        return DryRun(pipeline_steps(pipeline), shown)


def sum_tallies(tallies: Iterable[Tally]) -> Tally:
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
        publish_objects(_published(staging), output, staging)
    finally:
        remove_tree(staging)


# shards, and a stage's side outputs in `_name/` beside them (dead letters in FAILED_DIR, ...)
SHARD_NAME = re.compile(rf"(_[a-z]+/)?{SHARD_PREFIX}-\d{{5}}-of-\d{{5}}\.(parquet|jsonl)")


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


def _published(staging: str) -> list[str]:
    """Everything a job wrote under its staging directory: shards and dead letters."""
    return [f for f in _files_under(staging) if SHARD_NAME.fullmatch(os.path.relpath(f, staging))]


def _at_least_one_shard(staging: str, schema) -> None:
    """Nothing passed the filters: still leave a readable, empty dataset."""
    if not _shards(staging):
        import pyarrow.parquet as pq

        with FileSystems.create(f"{staging}/{SHARD_PREFIX}-00000-of-00001.parquet") as f:
            pq.write_table(schema.empty_table(), f)


def publish_objects(shards: list[str], output: str, staging: str) -> None:
    """Object stores: delete what is under `output`, then move each shard (and dead letter) under it."""
    remove_tree(output)
    FileSystems.mkdirs(output)  # a no-op on object stores
    FileSystems.rename(shards, [f"{output}/{os.path.relpath(s, staging)}" for s in shards])


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


def job_name(stage: str) -> str:
    return f"flavorfusion-{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
