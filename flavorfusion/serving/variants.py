"""Model variants: each is one inference runtime (`flavorfusion.models.runtime.InferenceRuntime`), loaded once per
process (never per request). A loaded variant encodes each request on its own (validation and truncation to the
model's limit happen there, so one bad input cannot reach a batch) and generates a batch of encoded requests in one
call; a summary never depends on the requests it shares a batch with."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from flavorfusion.config.model import ModelSource
from flavorfusion.data.record import ReviewGroup
from flavorfusion.errors import ConfigError
from flavorfusion.models.runtime import InferenceRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantSource:
    """Where a variant's model comes from: `model.name_or_path` syntax (a directory, a Hub name, or
    `wandb:entity/project/name:alias`)."""

    name: str
    name_or_path: str

    @property
    def key(self) -> str:
        return "model.name_or_path" if self.name == "trained" else f"serve.variants.{self.name}"

    def runtime(self, cfg: DictConfig) -> InferenceRuntime:
        return InferenceRuntime.from_config(cfg, self.name_or_path, self.key)

    @property
    def model_name(self) -> str:
        """What responses call the model (never a filesystem path), before it loads."""
        return ModelSource.parse(self.name_or_path, self.key).name


@dataclass
class LoadedModel:
    """A loaded variant as the routes use it. `encode(reviews) -> features` of one request (raises on input the model
    cannot take); `generate(list of features) -> list of summaries`, blocking."""

    generate: Callable[[list[Any]], list[str]]
    name: str
    sha256: str | None = None
    encode: Callable[[list[str]], Any] = list
    info: dict = field(default_factory=dict)

    @classmethod
    def of(cls, runtime: InferenceRuntime, load_seconds: float = 0.0) -> LoadedModel:
        def encode(reviews: list[str]) -> dict:
            return runtime.encode([ReviewGroup("request", list(reviews))])[0]

        return cls(runtime.generate, runtime.name, runtime.sha256, encode,
                   {**runtime.info, "load_seconds": round(load_seconds, 3), "max_source_tokens": runtime.source_limit,
                    "demo": runtime.demo})


def variant_sources(cfg: DictConfig) -> list[VariantSource]:
    """`model.name_or_path` as variant `trained`, then `serve.variants` (name -> a model source); the schema
    (flavorfusion.config.serve) has checked each source's form and that no variant takes the name `trained`."""
    sources = [VariantSource("trained", str(cfg.model.name_or_path))] if cfg.model.name_or_path else []
    sources += [VariantSource(str(name), str(value)) for name, value in cfg.serve.variants.items()]
    if not sources:
        raise ConfigError("model.name_or_path is not set and serve.variants is empty: give model.name_or_path=DIR "
                          "(the export to serve)")
    return sources


def load_variant(source: VariantSource, cfg: DictConfig) -> LoadedModel:
    """Load one variant's runtime as `summarize` loads it (quantized exports on the CPU, else `device`/`dtype`)."""
    start = time.perf_counter()
    runtime = source.runtime(cfg).load()
    loaded = LoadedModel.of(runtime, time.perf_counter() - start)
    log.info("variant %s: loaded %s on %s/%s in %.1f s (inputs up to %d tokens)", source.name, runtime.name,
             loaded.info["device"], loaded.info["dtype"], loaded.info["load_seconds"], runtime.source_limit)
    return loaded
