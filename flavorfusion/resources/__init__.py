"""Files the project ships (quickstart review groups) and the `ff.resource` config resolver."""

from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf


def resource_path(name: str) -> str:
    """Absolute path of a file shipped in `flavorfusion/resources/`."""
    path = Path(str(resources.files(__package__).joinpath(name)))
    if not path.exists():
        raise FileNotFoundError(f"flavorfusion ships no resource named {name!r} (looked in {path.parent})")
    return str(path)


def register_resolvers() -> None:
    # `${ff.resource:quickstart_reviews.jsonl}` lets configs point at shipped data wherever the package lives.
    if not OmegaConf.has_resolver("ff.resource"):
        OmegaConf.register_new_resolver("ff.resource", resource_path)
