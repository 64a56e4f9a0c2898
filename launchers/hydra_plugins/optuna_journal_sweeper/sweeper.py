"""`hydra/sweeper=optuna_journal`: an Optuna study over current Optuna, run by ask-and-tell.

Each round asks the study for `n_jobs` trials, launches them together through the configured launcher
(basic, vertex_local, vertex), and tells the study each job's return value: a float, a list following
`optimized_metric`, or a metrics dict (the Vertex launcher's) from which the `optimized_metric` values are
taken. A job that fails is told as FAIL with its error line, and the study goes on.

The study lives in a journal file (<sweep dir>/optuna_journal.log): a study that was interrupted continues
when the same command runs again with `hydra.sweep.dir=<that dir>`; trials left running are marked
interrupted and their parameters run again. Why not the official hydra-optuna-sweeper: docs/studies.md.
"""

import functools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from flavorfusion.sweep_files import JOURNAL, TRIAL_ERROR, TRIAL_INTERRUPTED, TRIAL_JOB_DIR, TRIAL_OVERRIDES

log = logging.getLogger(__name__)

# user attributes of a trial, read back by `flavorfusion.study`


class OptunaJournalSweeper(Sweeper):
    def __init__(self, **params: Any) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                       for k, v in params.items()}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=_failing_not_exiting(task_function), config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from flavorfusion.errors import exit_on_user_error

        # a bad sweeper setting ends the sweep with `error: <one line>`, not a traceback
        return exit_on_user_error(self._sweep)(arguments)

    # ---- the study ------------------------------------------------------------------------------------

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        import optuna

        assert self.config is not None and self.launcher is not None
        directions = _directions(self.params.get("direction", "maximize"))
        metric_names = _metric_names(self.config, len(directions))
        n_trials, n_jobs = int(self.params.get("n_trials", 20)), int(self.params.get("n_jobs", 2))
        if n_trials < 1 or n_jobs < 1:
            from flavorfusion.errors import ConfigError

            raise ConfigError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be at least 1")
        fixed, space = search_space(self._space_overrides(arguments))

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        journal = str(self.params.get("journal") or sweep_dir / JOURNAL)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
        name = str(self.params.get("study_name") or self.config.hydra.job.name)
        study = self._load_or_create(storage, name, directions)
        if metric_names and study.metric_names is None:
            study.set_metric_names(metric_names)  # the report names the objectives by them
        done = _recover_interrupted(study)
        sampler = _sampler(self.params.get("sampler"), offset=len(study.trials))
        study.sampler = sampler
        log.info("Optuna study %s in %s: %d of %d trial(s) done, %d at a time, %s, directions %s",
                 name, journal, done, n_trials, n_jobs, type(sampler).__name__, [d.name.lower() for d in directions])
        for key, dist in space.items():
            log.info("\t%s: %s", key, dist)

        returns: list[Sequence[JobReturn]] = []
        while done < n_trials:
            trials = [study.ask(space) for _ in range(min(n_jobs, n_trials - done))]
            returns.append(self._run_round(study, trials, fixed, metric_names))
            done += len(trials)
        self._log_best(study, metric_names)
        return returns

    def _load_or_create(self, storage, name: str, directions: list):
        import optuna

        from flavorfusion.errors import ConfigError

        study = optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True)
        if list(study.directions) != directions:
            raise ConfigError(f"hydra.sweeper.direction: the study {name!r} in this sweep dir was started with "
                              f"{[d.name.lower() for d in study.directions]}; use those or a new hydra.sweep.dir")
        if not study.trials:
            for params in self.params.get("enqueue") or []:
                study.enqueue_trial(dict(params))
        return study

    def _space_overrides(self, arguments: list[str]) -> list[Override]:
        assert self.hydra_context is not None
        params = self.params.get("params") or {}
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        by_key = {o.get_key_element(): o for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])}
        # a key given on the command line replaces its entry in hydra.sweeper.params
        by_key.update({o.get_key_element(): o for o in parser.parse_overrides(list(arguments))})
        return list(by_key.values())

    def _run_round(self, study, trials: list, fixed: list[str], metric_names: list[str] | None) -> Sequence[JobReturn]:
        assert self.launcher is not None
        numbers = [t.number for t in trials]
        # the trial's number is its job number, hence its directory: <sweep dir>/<trial number>
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        overrides = [fixed + [f"{key}={_encode(value)}" for key, value in t.params.items()] for t in trials]
        launchable = []
        for trial, job_overrides in zip(trials, overrides, strict=True):
            trial.set_user_attr(TRIAL_OVERRIDES, job_overrides)
            error = self._composition_error(job_overrides)
            if error:  # a trial that can't compose must not take the others of its round down with it
                _tell_failed(study, trial, error)
            else:
                launchable.append((trial, job_overrides))
        if not launchable:
            return []
        # consecutive numbers again: a trial that did not compose keeps its number, unused
        results: list[JobReturn] = []
        for start, group in _consecutive(launchable):
            results += self.launcher.launch([o for _, o in group], initial_job_idx=start)
        for (trial, _), ret in zip(launchable, results, strict=True):
            job_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
            if job_dir or ret.working_dir:
                trial.set_user_attr(TRIAL_JOB_DIR, str(job_dir or ret.working_dir))
            try:
                values = objective_values(ret.return_value, metric_names, len(study.directions))
            except Exception as err:  # the job raised, or returned nothing usable
                _tell_failed(study, trial, str(err) if isinstance(err, TrialExitError) else _one_line(err))
                continue
            study.tell(trial, values)
            log.info("trial %d: %s -> %s", trial.number, " ".join(trial.user_attrs[TRIAL_OVERRIDES][len(fixed):]),
                     values)
        return results

    def _composition_error(self, overrides: list[str]) -> str | None:
        assert self.hydra_context is not None and self.config is not None
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as err:
            return _one_line(err)
        return None

    def _log_best(self, study, metric_names: list[str] | None) -> None:
        best = study.best_trials
        log.info("%d trial(s) on the Pareto front%s", len(best), f" of {metric_names}" if metric_names else "")
        for trial in best:
            log.info("\ttrial %d: %s %s", trial.number, trial.values, trial.params)


# ---- pieces, separately testable ---------------------------------------------------------------------

def search_space(overrides: list[Override]) -> tuple[list[str], dict]:
    """(overrides every trial gets, {key: optuna distribution}) from Hydra overrides: choice(...) is
    categorical, range(...) the listed values, interval(a,b) a float, `tag(int, interval(a,b))` an integer,
    `tag(log, ...)` log-scaled; a plain value is fixed."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from flavorfusion.errors import ConfigError

    fixed: list[str] = []
    space: dict = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
            continue
        value = override.value()
        if isinstance(value, ChoiceSweep | RangeSweep):
            choices = list(override.sweep_iterator())
            if {"log", "int"} & set(getattr(value, "tags", set())):
                raise ConfigError(f"{key}: tag(log, ...) and tag(int, ...) apply to interval(...), not to "
                                  f"{override.input_line}")
            space[key] = CategoricalDistribution([_plain(c) for c in choices])
        elif isinstance(value, IntervalSweep):
            log_scale = "log" in value.tags
            if "int" in value.tags:  # Hydra parses interval ends as floats: integers are asked for by tag
                space[key] = IntDistribution(int(value.start), int(value.end), log=log_scale)
            else:
                space[key] = FloatDistribution(float(value.start), float(value.end), log=log_scale)
        else:
            raise ConfigError(f"{key}: {override.input_line} is not a search space Optuna can take "
                              "(choice, range, interval)")
    return fixed, space


def objective_values(value: Any, metric_names: list[str] | None, n_objectives: int) -> list[float]:
    """A job's return value as the study's objective values. Raises (the trial fails) on anything else."""
    if isinstance(value, dict):  # a launcher that returns metrics.json (Vertex, return_metric=null)
        if not metric_names:
            raise ValueError("the job returned a metrics dict; set optimized_metric to name the objectives")
        missing = [n for n in metric_names if n not in value]
        if missing:
            raise ValueError(f"the job's metrics have no {missing[0]!r}")
        value = [value[n] for n in metric_names]
    if value is None:
        raise ValueError("the job returned nothing: set optimized_metric to the metric(s) the study optimizes")
    values = [value] if isinstance(value, int | float) else list(value)
    if len(values) != n_objectives:
        raise ValueError(f"the job returned {len(values)} value(s) for {n_objectives} direction(s)")
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the job returned a value that is not finite: {values}")
    return values


def _directions(direction: Any) -> list:
    from optuna.study import StudyDirection

    from flavorfusion.errors import ConfigError

    names = [direction] if isinstance(direction, str) else list(direction)
    if not names or any(str(n).lower() not in ("maximize", "minimize") for n in names):
        raise ConfigError(f"hydra.sweeper.direction={direction}: give maximize, minimize or a list of them")
    return [StudyDirection.MAXIMIZE if str(n).lower() == "maximize" else StudyDirection.MINIMIZE for n in names]


def _metric_names(config: DictConfig, n_objectives: int) -> list[str] | None:
    """The task's `optimized_metric` as a list, checked against the number of directions."""
    from flavorfusion.errors import ConfigError

    metric = OmegaConf.select(config, "optimized_metric")
    if metric is None:
        return None
    names = [str(metric)] if isinstance(metric, str) else [str(m) for m in metric]
    if len(names) != n_objectives:
        raise ConfigError(f"optimized_metric names {len(names)} metric(s) but hydra.sweeper.direction has "
                          f"{n_objectives}: give one direction per metric")
    return names


def _sampler(spec: Any, offset: int):
    """The sampler, its `seed` moved by the trials already in the study: a resumed study draws new points."""
    from hydra.utils import instantiate

    spec = dict(spec or {"_target_": "optuna.samplers.TPESampler"})
    if spec.get("seed") is not None and offset:
        spec["seed"] = int(spec["seed"]) + offset
    return instantiate(spec)


def _recover_interrupted(study) -> int:
    """Trials left RUNNING by an earlier, interrupted process become FAIL (`interrupted`) and their parameters
    are queued to run again. Returns the number of trials that count as done."""
    import optuna
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = optuna.Trial(study, frozen._trial_id)
        trial.set_user_attr(TRIAL_INTERRUPTED, True)
        trial.set_user_attr(TRIAL_ERROR, "interrupted: the sweep stopped before this trial finished")
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(frozen.params, skip_if_exists=False)
        log.warning("trial %d was interrupted: its parameters run again", frozen.number)
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    return sum(1 for t in study.get_trials(deepcopy=False, states=finished) if not t.user_attrs.get(TRIAL_INTERRUPTED))


def _tell_failed(study, trial, error: str) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr(TRIAL_ERROR, error)
    study.tell(trial, state=TrialState.FAIL)
    log.error("trial %d failed: %s", trial.number, error)


def _consecutive(items: list) -> list[tuple[int, list]]:
    """[(first trial number, items)] split where trial numbers are not consecutive."""
    groups: list[tuple[int, list]] = []
    for item in items:
        if groups and groups[-1][1][-1][0].number + 1 == item[0].number:
            groups[-1][1].append(item)
        else:
            groups.append((item[0].number, [item]))
    return groups


def _failing_not_exiting(task_function: TaskFunction) -> TaskFunction:
    """Entry points exit (SystemExit 2, after printing `error: ...`) on a user error; in a study that exit would
    end the whole sweep. Here it becomes an exception holding the error, so only its trial fails."""

    @functools.wraps(task_function)
    def task(cfg):
        try:
            return task_function(cfg)
        except SystemExit as exit_:
            if exit_.code in (0, None):
                raise
            cause = exit_.__cause__ or exit_.__context__
            raise TrialExitError(_one_line(cause) if cause else f"the job exited with status {exit_.code}") from cause

    return task


class TrialExitError(RuntimeError):
    """A job's SystemExit, caught so that only its trial fails."""


def _plain(value: Any) -> Any:
    """A choice as Optuna stores it (None, bool, int, float, str)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _encode(value: Any) -> str:
    """A parameter value as a Hydra override value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def journal_path(sweep_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(sweep_dir), JOURNAL)
