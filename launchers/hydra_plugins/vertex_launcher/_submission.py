"""Submit every job, then poll them until each one has finished: the machinery every backend shares."""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"
FINAL_STATES = (SUCCEEDED, FAILED)


@dataclass
class JobState:
    """A backend's view of one job: PENDING, RUNNING, SUCCEEDED or FAILED, and why when it failed."""

    state: str
    message: str = ""


@dataclass
class JobOutcome:
    """How a job ended: SUCCEEDED with its return value, or FAILED with the backend's message."""

    state: str
    message: str = ""
    return_value: Any = None
    job_id: str | None = None


class JobBackend(Protocol):
    """Where jobs run. `job` is whatever the launcher prepared; the engine only passes it through."""

    def submit(self, job: Any) -> str: ...

    def get(self, job_id: str) -> JobState: ...

    def cancel(self, job_id: str) -> None: ...

    def result(self, job: Any, job_id: str) -> Any: ...


def run_jobs(
    backend: JobBackend,
    jobs: Sequence[Any],
    *,
    names: Sequence[str],
    first_poll_delay: float,
    max_poll_delay: float,
    max_poll_errors: int = 10,
    sleep: Callable[[float], None] = time.sleep,
    on_submitted: Callable[[int, str], None] | None = None,
) -> list[JobOutcome]:
    """Submit all `jobs`, wait for all, return one final outcome per job, in order.

    A rejected submission fails only its own job; `on_submitted(i, job_id)` runs after each accepted one. Polls back off from `first_poll_delay` to
    `max_poll_delay`. KeyboardInterrupt cancels every submitted job that has not finished, then propagates.
    """
    outcomes: dict[int, JobOutcome] = {}
    submitted: dict[int, str] = {}
    try:
        for i, job in enumerate(jobs):
            try:
                submitted[i] = backend.submit(job)
            except Exception as err:  # a quota or validation error must not lose the other jobs
                outcomes[i] = JobOutcome(FAILED, f"submission rejected: {_one_line(err)}")
                log.error("%s: submission rejected: %s", names[i], _one_line(err))
                continue
            log.info("%s: submitted as %s", names[i], submitted[i])
            if on_submitted is not None:
                on_submitted(i, submitted[i])

        unfinished = {i: job_id for i, job_id in submitted.items()}
        poll_errors = dict.fromkeys(unfinished, 0)
        last_state = dict.fromkeys(unfinished, "")
        delay = first_poll_delay
        while unfinished:
            sleep(delay)
            delay = min(delay * 2, max_poll_delay)
            for i, job_id in list(unfinished.items()):
                try:
                    status = backend.get(job_id)
                except Exception as err:  # a transient API error: try again next round, up to a limit
                    poll_errors[i] += 1
                    log.warning("%s: could not read its state (%d/%d): %s", names[i], poll_errors[i],
                                max_poll_errors, _one_line(err))
                    if poll_errors[i] >= max_poll_errors:
                        outcomes[i] = JobOutcome(FAILED, f"lost track of the job: {_one_line(err)}", job_id=job_id)
                        del unfinished[i]
                    continue
                poll_errors[i] = 0
                if status.state != last_state[i]:
                    log.info("%s: %s%s", names[i], status.state, f" ({status.message})" if status.message else "")
                    last_state[i] = status.state
                if status.state not in FINAL_STATES:
                    continue
                del unfinished[i]
                outcomes[i] = _finish(backend, jobs[i], job_id, status, names[i])
    except KeyboardInterrupt:
        to_cancel = {i: job_id for i, job_id in submitted.items() if i not in outcomes}
        log.warning("interrupted: cancelling %d submitted job(s)", len(to_cancel))
        for i, job_id in to_cancel.items():
            try:
                backend.cancel(job_id)
                log.warning("%s: cancel requested", names[i])
            except Exception as err:
                log.error("%s: could not cancel %s: %s", names[i], job_id, _one_line(err))
        raise
    return [outcomes[i] for i in range(len(jobs))]


def _finish(backend: JobBackend, job: Any, job_id: str, status: JobState, name: str) -> JobOutcome:
    if status.state == FAILED:
        return JobOutcome(FAILED, status.message or "failed", job_id=job_id)
    try:
        value = backend.result(job, job_id)
    except Exception as err:  # the job itself succeeded; a missing result must not fail the sweep
        log.warning("%s: succeeded, but its result could not be read: %s", name, _one_line(err))
        value = None
    return JobOutcome(SUCCEEDED, return_value=value, job_id=job_id)


def _one_line(err: BaseException) -> str:
    """`Type: message` on one line, short enough for a log line and a summary file."""
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."
