"""Hydra sweeper plugin: an Optuna study (ask-and-tell, journal file storage) whose trials any launcher runs."""

__version__ = "0.1.0"
