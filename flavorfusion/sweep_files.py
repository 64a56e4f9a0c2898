"""What a sweep directory holds beside its runs, named once for the plugins that write it (the Optuna journal
sweeper, the Vertex launcher) and the study report that reads it (`flavorfusion.studies`)."""

JOURNAL = "optuna_journal.log"  # the Optuna study (JournalFileStorage)
VERTEX_JOBS = "vertex_jobs.yaml"  # each Vertex job's name, state, output dir, and metrics or error

# what the sweeper records on each Optuna trial (`trial.user_attrs`)
TRIAL_OVERRIDES = "overrides"  # the job's overrides, the fixed ones first
TRIAL_JOB_DIR = "job_dir"  # where the job wrote its run
TRIAL_ERROR = "error"  # the first line of a failed job's error
TRIAL_INTERRUPTED = "interrupted"  # the sweep stopped before the trial finished
