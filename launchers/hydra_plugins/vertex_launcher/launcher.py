"""`hydra/launcher=vertex`: every job of a multirun becomes one Vertex AI custom job; `vertex_local` runs
the same submit/poll machinery against local processes."""

import logging
import sys
import time
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from flavorfusion.sweep_files import VERTEX_JOBS

from .config import VertexLauncherConf, VertexLocalLauncherConf

log = logging.getLogger(__name__)


class _SubmitAndPollLauncher(Launcher):
    conf_class: type[VertexLauncherConf] = VertexLauncherConf

    def __init__(self, **params: Any) -> None:
        # Hydra built `params` from the typed `hydra.launcher` node: the same dataclass, one definition
        self.params = self.conf_class(**{k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
                                         for k, v in params.items()})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launched_at = time.strftime("%Y%m%d-%H%M%S")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from flavorfusion.errors import exit_on_user_error

        # a bad launcher setting ends the sweep with `error: <one line>`, not a traceback
        return exit_on_user_error(self._compose_and_launch)(job_overrides, initial_job_idx)

    def _compose_and_launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from ._jobs import compose_jobs

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = compose_jobs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        return self._launch(jobs)

    def _entry_point(self) -> str | None:
        """The module the sweep was started from: `python -m flavorfusion.train`, or the console script's."""
        main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if main_spec is not None:
            return main_spec.name
        return getattr(self.task_function, "__module__", None)

    @abstractmethod  # abstract, so Hydra does not list this base class as a launcher of its own
    def _launch(self, jobs: list) -> Sequence[JobReturn]: ...


class VertexLauncher(_SubmitAndPollLauncher):
    """Submits every job, waits for all, returns each job's metrics (or Vertex's error message)."""

    def _launch(self, jobs: list) -> Sequence[JobReturn]:
        from . import vertex
        from ._jobs import describe, job_return, save_job_record
        from ._submission import SUCCEEDED, JobOutcome, run_jobs
        from .client import VertexJobClient

        assert self.config is not None
        # every check that can fail runs before the first submission
        settings = self.params.checked(default_run_id=self.launched_at)
        entry_point = self._entry_point()
        vertex.check_command_matches_entry_point(settings.command, entry_point)
        env_values = vertex.read_env_values(settings.env)
        if vertex.runs_train(settings.command, entry_point):
            # a job that would fail at start-up on its VM fails the sweep here, with nothing written or submitted
            vertex.check_jobs_as_train_does(jobs)
        sweep = vertex.sweep_name(self.config)
        hydra_overrides = list(OmegaConf.to_container(self.config.hydra.overrides.hydra))
        group = vertex.wandb_group(self.config)
        planned = [vertex.plan_job(job, settings, sweep, hydra_overrides, group) for job in jobs]
        for job in planned:
            vertex.write_job_spec(job, settings, vertex.build_custom_job(job, settings))
            save_job_record(job.composed)
        names = [f"#{job.num} {job.display_name}" for job in planned]
        summary = _SweepSummary(Path(str(self.config.hydra.sweep.dir)) / VERTEX_JOBS, settings.run_id, [
            {"num": job.num, "display_name": job.display_name, "output_dir": job.output_uri,
             "overrides": list(job.composed.overrides)} for job in planned])

        if settings.dry_run:
            for job in planned:
                summary.set(job.num, write=False, state="DRY_RUN")
            summary.write()
            log.info("dry run: wrote %d job spec(s) (custom_job.yaml) under %s; nothing submitted", len(planned),
                     self.config.hydra.sweep.dir)
            outcomes = [JobOutcome(SUCCEEDED) for _ in planned]
            return [job_return(job.composed, o, n) for job, o, n in zip(planned, outcomes, names, strict=True)]

        log.info("sweep %s (run %s): submitting %d job(s) to Vertex AI in %s/%s", sweep, settings.run_id,
                 len(planned), settings.project, settings.region)
        for job in planned:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.composed.overrides)))
        client = VertexJobClient(settings.project, settings.region)
        client.connect()
        backend = vertex.VertexBackend(client, settings, env_values)
        summary.write()

        def record_submission(i: int, job_id: str) -> None:
            # on disk at once: if this process dies, the jobs can still be found and cancelled
            summary.set(planned[i].num, state="SUBMITTED", vertex_job=job_id)

        outcomes = run_jobs(backend, planned, names=names, first_poll_delay=min(5.0, settings.poll_interval),
                            max_poll_delay=settings.poll_interval, on_submitted=record_submission)
        for job, o in zip(planned, outcomes, strict=True):
            result = {"metrics": o.return_value} if o.state == SUCCEEDED else {"error": o.message}
            summary.set(job.num, write=False, state=o.state, vertex_job=o.job_id, **result)
        summary.write()
        _log_results(names, outcomes, describe)
        return [job_return(job.composed, o, n) for job, o, n in zip(planned, outcomes, names, strict=True)]


class VertexLocalLauncher(_SubmitAndPollLauncher):
    """The same submit/poll/JobReturn machinery; each job runs in a forked local process."""

    conf_class = VertexLocalLauncherConf

    def _launch(self, jobs: list) -> Sequence[JobReturn]:
        from ._jobs import describe, job_return
        from ._submission import run_jobs
        from .local import LocalProcessBackend

        assert self.config is not None
        poll_interval = self.params.poll_interval
        backend = LocalProcessBackend(self.hydra_context, self.task_function, self.params.max_parallel)
        names = [f"#{job.num}" for job in jobs]
        # the same record as on Vertex, so that tools reading a sweep (flavorfusion.study) see one format
        summary = _SweepSummary(Path(str(self.config.hydra.sweep.dir)) / VERTEX_JOBS, self.launched_at, [
            {"num": job.num, "display_name": f"local-{job.num}", "output_dir": job.local_dir,
             "overrides": list(job.overrides)} for job in jobs])
        summary.write()
        log.info("Launching %d jobs in local processes", len(jobs))
        for job in jobs:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
        try:
            outcomes = run_jobs(backend, jobs, names=names, first_poll_delay=min(0.05, poll_interval),
                                max_poll_delay=poll_interval,
                                on_submitted=lambda i, job_id: summary.set(jobs[i].num, state="SUBMITTED",
                                                                           vertex_job=job_id))
        finally:
            backend.close()
        for job, o in zip(jobs, outcomes, strict=True):
            # metrics.json, as the Vertex launcher reads it from the job's output dir
            result = {"metrics": _read_metrics(job.local_dir)} if o.state == "SUCCEEDED" else {"error": o.message}
            summary.set(job.num, write=False, state=o.state, vertex_job=o.job_id, **result)
        summary.write()
        _log_results(names, outcomes, describe)
        return [job_return(job, o, n) for job, o, n in zip(jobs, outcomes, names, strict=True)]


def _log_results(names: list[str], outcomes: list, describe) -> None:
    failed = sum(o.state != "SUCCEEDED" for o in outcomes)
    log.info("%d job(s) finished: %d succeeded, %d failed", len(outcomes), len(outcomes) - failed, failed)
    for name, outcome in zip(names, outcomes, strict=True):
        detail = describe(outcome.return_value) if outcome.state == "SUCCEEDED" else outcome.message
        (log.info if outcome.state == "SUCCEEDED" else log.error)("\t%s %s %s", name, outcome.state, detail)


class _SweepSummary:
    """<sweep dir>/vertex_jobs.yaml: every job's Vertex name, state, output dir, and metrics or error."""

    def __init__(self, path: Path, run_id: str, planned: list[dict]):
        import yaml

        self.path = path
        self.run_id = run_id
        self.entries: dict[int, dict] = {}
        if path.exists():  # batched sweepers launch several times into one sweep dir
            self.entries = {e["num"]: e for e in (yaml.safe_load(path.read_text()) or {}).get("jobs", [])}
        for job in planned:  # num, display_name, output_dir, overrides
            self.entries[job["num"]] = {**job, "state": "PLANNED"}

    def set(self, num: int, write: bool = True, **fields: Any) -> None:
        self.entries[num].update({k: v for k, v in fields.items() if v is not None})
        if write:
            self.write()

    def write(self) -> None:
        import yaml

        from flavorfusion.io import atomic_output

        jobs = [self.entries[num] for num in sorted(self.entries)]
        with atomic_output(self.path) as tmp:  # a report read while the sweep runs sees a whole file
            Path(tmp).write_text(yaml.safe_dump({"run_id": self.run_id, "jobs": jobs}, sort_keys=False))


def _read_metrics(job_dir: str) -> dict | None:
    import json

    try:
        with open(Path(job_dir) / "metrics.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
