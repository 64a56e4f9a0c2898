"""Config of the `optuna_journal` sweeper (`hydra.sweeper.*`)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaJournalSweeperConf:
    _target_: str = "hydra_plugins.optuna_journal_sweeper.sweeper.OptunaJournalSweeper"
    # the sweeper builds the sampler itself (its seed moves on resume)
    _recursive_: bool = False

    # null: the job name (`train`); one journal can hold several studies
    study_name: str | None = None
    # maximize | minimize, or a list of them, one per entry of `optimized_metric` (a multi-objective study)
    direction: Any = "maximize"
    # trials of the study in all: a rerun into the same sweep dir runs only the missing ones
    n_trials: int = 20
    # trials launched at once (one launcher.launch call); the launcher decides how many run in parallel
    n_jobs: int = 2
    # an Optuna sampler; `seed` makes the study reproducible (a resumed study draws with seed + trials done,
    # so it does not replay the first draws). NSGAIISampler, RandomSampler ... work too.
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 42})
    # the journal file; null: <hydra.sweep.dir>/optuna_journal.log. Rerunning with the same sweep dir resumes.
    journal: str | None = None
    # the search space: key -> choice(a,b) | range(1,5) | interval(0.1,0.9) | tag(int, interval(1,20)) |
    # tag(log, interval(1e-5,1e-2)) | a value
    params: dict[str, str] | None = None
    # trials run first, before the sampler draws (a baseline, a known setting): a list of {key: value}
    enqueue: list[Any] = field(default_factory=list)


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna_journal", node=OptunaJournalSweeperConf, provider="optuna_journal_sweeper"
)
