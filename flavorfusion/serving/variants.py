"""Model variants: each is loaded once per process (never per request). A loaded variant encodes each request
on its own (validation and truncation to the model's limit happen there, so one bad input cannot reach a
batch) and generates a batch of encoded requests through the project's one generation path (`GroupSummarizer`:
PRIMERA's input layout, `generate_ids`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flavorfusion.config.model import ModelSource
from flavorfusion.data.record import ReviewGroup
from flavorfusion.errors import ConfigError

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

    @property
    def model_name(self) -> str:
        """What responses call the model: the artifact or Hub name, or a directory's last component (never the
        whole path: it tells a caller about the server's filesystem)."""
        source = ModelSource.parse(self.name_or_path, self.key)
        return source.location.rsplit("/", 1)[-1] if source.kind != "local" else \
            os.path.basename(os.path.normpath(source.location))


@dataclass
class LoadedModel:
    """A loaded variant. `encode(reviews) -> features` of one request (raises on input the model cannot take);
    `generate(list of features) -> list of summaries`, blocking."""

    generate: Callable[[list[Any]], list[str]]
    name: str
    sha256: str | None = None
    encode: Callable[[list[str]], Any] = list
    info: dict = field(default_factory=dict)


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
    """Load one export as `summarize` does (quantized exports on the CPU, else `device`/`dtype`)."""
    from flavorfusion.models.inference import inference_summarizer
    from flavorfusion.models.loading import load_pretrained
    from flavorfusion.summarization import weights_sha256

    start = time.perf_counter()
    model, tokenizer = load_pretrained(source.name_or_path, key=source.key)
    try:  # as loaded, like summarize's provenance: the same weights give the same hash on any device
        sha256 = weights_sha256(model)
    except (TypeError, AttributeError, RuntimeError):  # packed quantized weights the hash cannot view
        sha256 = None
    summarizer, device, dtype, quantized = inference_summarizer(model, tokenizer, cfg.data, device=cfg.device,
                                                                dtype=cfg.dtype, attention=cfg.model.attention)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)

    def encode(reviews: list[str]) -> dict:
        return summarizer.encode([ReviewGroup("request", list(reviews))])[0]

    def generate(features: list[dict]) -> list[str]:
        return summarizer.generate(features, **generation)

    seconds = time.perf_counter() - start
    log.info("variant %s: loaded %s on %s/%s in %.1f s (inputs up to %d tokens)", source.name, source.model_name,
             device.type, str(dtype).removeprefix("torch."), seconds, summarizer.max_source_length)
    return LoadedModel(generate, source.model_name, sha256, encode,
                       {"device": device.type, "quantized": quantized, "load_seconds": round(seconds, 3),
                        "max_source_tokens": summarizer.max_source_length})
