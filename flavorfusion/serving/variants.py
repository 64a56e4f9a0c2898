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

from flavorfusion.data.record import ReviewGroup
from flavorfusion.errors import ConfigError

log = logging.getLogger(__name__)

WANDB_PREFIX = "wandb:"


@dataclass(frozen=True)
class VariantSource:
    """Where a variant's model comes from: `model.name_or_path` syntax (a directory, a Hub name, or
    `wandb:entity/project/name:alias`)."""

    name: str
    name_or_path: str

    @property
    def model_name(self) -> str:
        """What responses call the model: the artifact or Hub name, or a directory's last component (never the
        whole path: it tells a caller about the server's filesystem)."""
        if self.name_or_path.startswith(WANDB_PREFIX):
            return self.name_or_path.removeprefix(WANDB_PREFIX).rsplit("/", 1)[-1]
        return os.path.basename(os.path.normpath(self.name_or_path))


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
    """`model.name_or_path` as variant `trained`, then `serve.variants` (name -> the same syntax)."""
    sources = []
    if cfg.model.get("name_or_path"):
        sources.append(VariantSource("trained", str(cfg.model.name_or_path)))
    for name, value in (cfg.serve.get("variants") or {}).items():
        if any(s.name == name for s in sources):
            raise ConfigError(f"serve.variants.{name}: variant {name} is given twice "
                              "(model.name_or_path is variant trained)")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"serve.variants.{name}={value}: give a directory, a Hub name or "
                              "wandb:entity/project/name:alias")
        sources.append(VariantSource(str(name), value))
    if not sources:
        raise ConfigError("model.name_or_path is not set and serve.variants is empty: give model.name_or_path=DIR "
                          "(the export to serve)")
    return sources


def load_variant(source: VariantSource, cfg: DictConfig) -> LoadedModel:
    """Load one export as `summarize` does (quantized exports on the CPU, else `device`/`dtype`)."""
    from flavorfusion.models.inference import GroupSummarizer, place_for_inference
    from flavorfusion.models.loading import load_pretrained
    from flavorfusion.summarization import weights_sha256

    start = time.perf_counter()
    value = source.name_or_path
    if value.startswith(WANDB_PREFIX):
        model, tokenizer = load_pretrained(None, value.removeprefix(WANDB_PREFIX), key=f"serve.variants.{source.name}")
    else:
        model, tokenizer = load_pretrained(value, key=f"variant {source.name}")
    model, device, dtype, quantized = place_for_inference(model, cfg.device, cfg.dtype)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    summarizer = GroupSummarizer(model, tokenizer, cfg.data)
    try:
        sha256 = weights_sha256(model)
    except (TypeError, AttributeError, RuntimeError):  # packed quantized weights the hash cannot view
        sha256 = None

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
