"""`engine`: where a stage's work runs (`conf/engine/<name>.yaml`); `prepare` and `summarize` both take one.

A stage (`flavorfusion.preparation`, `flavorfusion.summarization`) owns its output, its writer, its report and
what it prints. It hands an engine a `Job`; the engine runs the job's transform and returns the `Tally` of what
was read, dropped, written and failed:

- `local` runs `job.run_local(output)` in this process;
- `beam` (`flavorfusion.engines.beam`) builds `job.expand(pipeline, staging)` on Beam's in-process Python runner
  or on Google Cloud Dataflow, runs it, and publishes the shards under `output` when it succeeds.

Each stage's Beam graph lives beside that stage's rules: `data/sources/google_local_beam.py` (prepare) and
`summarization/beam.py` (summarize).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flavorfusion.data.report import Tally

# where an engine that writes a directory keeps a stage's dead letters: beside the shards, a name readers skip
FAILED_DIR = "_failed"


class Job(Protocol):
    """What a stage asks an engine to run."""

    #: the stage (`prepare`, `summarize`): job names and messages
    name: str

    def run_local(self, output: str) -> Tally:
        """Do the work in this process; `output` is written atomically (nothing partial under its name)."""

    def expand(self, pipeline: Any, staging: str) -> Any:
        """Add the work to a Beam pipeline: shards under `staging`; returns the PCollection of its tallies."""


class LocalEngine:
    """`engine=local`: the stage's work in this process, written to one file."""

    name = "local"
    #: the output is one file (a `beam` output is a directory of shards)
    writes_directory = False
    dry_run = False

    def run(self, job: Job, output: str) -> Tally:
        return job.run_local(output)
