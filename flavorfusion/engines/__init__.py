"""`engine`: where a stage's work runs (`conf/engine/<name>.yaml`); `prepare` and `summarize` both take one.

A stage (`flavorfusion.preparation`, `flavorfusion.summarization`) owns its output, its writer, its report and
what it prints. It hands an engine a `Job`; the engine runs it and returns the `Tally` of what was read, dropped,
written and failed:

- `local` runs `job.run_local(output)` in this process, into one file;
- `beam` (`flavorfusion.engines.beam`) builds `job.expand(pipeline, staging)` on Beam's in-process Python runner
  or on Google Cloud Dataflow, runs it, and publishes the shards under `output` (a directory) when it succeeds.

Each stage's Beam graph lives beside that stage's rules: `data/sources/google_local_beam.py` (prepare) and
`summarization/beam.py` (summarize). A stage asks an engine only what `Engine` names.
"""

from __future__ import annotations

from typing import Any, Protocol

from flavorfusion.errors import ConfigError
from flavorfusion.tally import Tally

__all__ = ["FAILED_DIR", "Engine", "Job", "LocalEngine", "Tally"]

# where an engine that writes a directory keeps a stage's dead letters: beside the shards, a name readers skip
FAILED_DIR = "_failed"


class Job(Protocol):
    """What a stage asks an engine to run."""

    #: the stage (`prepare`, `summarize`): job names and messages
    name: str
    #: the Arrow schema of its rows (an engine that writes shards writes an empty one with it when none pass)
    schema: Any

    def run_local(self, output: str) -> Tally:
        """Do the work in this process; `output` is written atomically (nothing partial under its name)."""

    def expand(self, pipeline: Any, staging: str) -> Any:
        """Add the work to a Beam pipeline: shards under `staging`; returns the PCollection of its tallies. The graph
        takes its settings from `worker_settings()`."""

    def worker_settings(self) -> Any:
        """The settings a Beam worker needs, as picklable values, built once from the stage's config and checked
        where the driver can check them (input files and columns, the model's files)."""


class Engine(Protocol):
    """Where a job runs."""

    #: `local`, `beam`: messages
    name: str
    #: the output is a directory of shards (else one file)
    writes_directory: bool
    #: build and check the job, run nothing (Dataflow)
    dry_run: bool

    def run(self, job: Job, output: str) -> Tally:
        """Run `job` and write `output`; the tally of what it did."""

    def dry_run_job(self, job: Job) -> Any:
        """What the job would run, checked, with nothing read or written (an object with `text()` and
        `as_dict()`)."""


class LocalEngine:
    """`engine=local`: the stage's work in this process, written to one file."""

    name = "local"
    writes_directory = False
    dry_run = False

    def run(self, job: Job, output: str) -> Tally:
        return job.run_local(output)

    def dry_run_job(self, job: Job) -> Any:
        raise ConfigError(f"engine=local has no dry run: run {job.name} itself, or check a Dataflow job with "
                          "engine=beam engine.runner=DataflowRunner engine.dry_run=true")
