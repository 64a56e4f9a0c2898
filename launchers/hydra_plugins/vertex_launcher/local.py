"""A backend that runs each job in a forked local process: the `vertex_local` launcher's stand-in for Vertex.

Forking (POSIX only) lets the job run the task function of this very process, the way Hydra's in-process
launchers do, so Hydra's launcher test suites apply. At most `max_parallel` jobs run at once; the others
wait in a queue, as jobs wait for capacity on Vertex.
"""

import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Any

from hydra.types import HydraContext, TaskFunction

from ._jobs import ComposedJob
from ._submission import FAILED, PENDING, RUNNING, SUCCEEDED, JobState

log = logging.getLogger(__name__)


@dataclass
class _LocalJob:
    job: ComposedJob
    result_path: str
    process: Any = None
    cancelled: bool = False
    outcome: dict | None = None


class LocalProcessBackend:
    def __init__(self, hydra_context: HydraContext, task_function: TaskFunction, max_parallel: int = 1):
        if sys.platform == "win32":
            raise RuntimeError("hydra/launcher=vertex_local needs fork (Linux or macOS)")
        self._context = multiprocessing.get_context("fork")
        self._hydra_context = hydra_context
        self._task_function = task_function
        self._max_parallel = max(1, int(max_parallel))
        self._results_dir = tempfile.mkdtemp(prefix="vertex_local_")
        self._jobs: dict[str, _LocalJob] = {}
        self._queue: list[str] = []

    def submit(self, job: ComposedJob) -> str:
        job_id = f"local-{job.num}"
        self._jobs[job_id] = _LocalJob(job, os.path.join(self._results_dir, f"{job.num}.pkl"))
        self._queue.append(job_id)
        self._start_queued()
        return job_id

    def get(self, job_id: str) -> JobState:
        self._start_queued()
        local = self._jobs[job_id]
        if local.cancelled:
            return JobState(FAILED, "cancelled")
        if local.process is None:
            return JobState(PENDING)
        if local.process.is_alive():
            return JobState(RUNNING)
        local.process.join()
        if local.outcome is None:
            local.outcome = _read_outcome(local.result_path, local.process.exitcode)
            self._start_queued()
        if local.outcome["ok"]:
            return JobState(SUCCEEDED)
        return JobState(FAILED, local.outcome["message"])

    def cancel(self, job_id: str) -> None:
        local = self._jobs[job_id]
        local.cancelled = True
        if job_id in self._queue:
            self._queue.remove(job_id)
        if local.process is not None and local.process.is_alive():
            local.process.terminate()
            local.process.join(timeout=10)

    def result(self, job: ComposedJob, job_id: str) -> Any:
        outcome = self._jobs[job_id].outcome
        return outcome["value"] if outcome else None

    def close(self) -> None:
        shutil.rmtree(self._results_dir, ignore_errors=True)

    def _start_queued(self) -> None:
        running = sum(1 for j in self._jobs.values() if j.process is not None and j.process.is_alive())
        while self._queue and running < self._max_parallel:
            local = self._jobs[self._queue.pop(0)]
            local.process = self._context.Process(
                target=_run_in_child,
                args=(self._hydra_context, self._task_function, local.job.sweep_config, local.result_path),
                name=f"vertex_local-{local.job.num}",
            )
            local.process.start()
            running += 1


def _run_in_child(hydra_context: HydraContext, task_function: TaskFunction, sweep_config, result_path: str) -> None:
    """Runs in the forked process: Hydra's own run_job (output dir, .hydra/, logging), then report back."""
    from hydra.core.utils import JobStatus, run_job

    try:
        ret = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        if ret.status == JobStatus.COMPLETED:
            outcome = {"ok": True, "value": ret._return_value}
        else:
            err = ret._return_value
            traceback.print_exception(type(err), err, err.__traceback__)
            outcome = {"ok": False, "message": _describe(err)}
    except BaseException as err:  # a failing callback, or Ctrl-C reaching this process
        traceback.print_exc()
        outcome = {"ok": False, "message": _describe(err)}
    try:
        # JSON, not pickle: the parent must never unpickle a file it finds on disk
        payload = json.dumps(outcome, default=_plain).encode()
    except (TypeError, ValueError) as err:  # a value JSON can't hold: the job succeeded, its value stays here
        print(f"vertex_local: the job's return value cannot be sent back ({err}); returning None", file=sys.stderr)
        payload = json.dumps({"ok": True, "value": None}).encode()
    from flavorfusion.io import atomic_output  # here, not at the top: Hydra imports this module in every app

    with atomic_output(result_path) as tmp, open(tmp, "wb") as f:  # the parent reads a whole result or none
        f.write(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    if not outcome["ok"]:
        sys.exit(1)


def _read_outcome(result_path: str, exitcode: int | None) -> dict:
    try:
        with open(result_path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return {"ok": False, "message": f"the job process ended with exit code {exitcode} and no result"}


def _plain(value):
    """Return values JSON can't hold as they are: configs become plain containers."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
