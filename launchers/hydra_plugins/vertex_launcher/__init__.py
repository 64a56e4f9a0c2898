"""Hydra launcher plugin: each job of a multirun becomes one Vertex AI custom job."""

__version__ = "0.1.0"
