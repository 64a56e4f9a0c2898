"""Model variants: each is loaded once per process (never per request) and summarizes a batch of review lists
through the project's one generation path (`GroupSummarizer`: PRIMERA's input layout, `generate_ids`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from flavorfusion.data.record import ReviewGroup
from flavorfusion.errors import ConfigError

log = logging.getLogger(__name__)

WANDB_PREFIX = "wandb:"


@dataclass(frozen=True)
class VariantSource:
    """Where a variant's model comes from: a directory (or Hub name), or a W&B artifact."""

    name: str
    path: str | None = None
    wandb_artifact: str | None = None

    @property
    def label(self) -> str:
        return str(self.wandb_artifact or self.path)


@dataclass
class LoadedModel:
    """A loaded variant: `summarize(list of review lists) -> list of summaries`, blocking."""

    summarize: Callable[[list[list[str]]], list[str]]
    model: str  # what it was loaded from
    info: dict = field(default_factory=dict)


def variant_sources(cfg: DictConfig) -> list[VariantSource]:
    """`model.path` / `model.wandb_artifact` as variant `trained`, then `serve.variants` (name -> a directory,
    `wandb:entity/project/name:alias`, or {path, wandb_artifact})."""
    sources = []
    if cfg.model.get("path") or cfg.model.get("wandb_artifact"):
        sources.append(VariantSource("trained", cfg.model.get("path"), cfg.model.get("wandb_artifact")))
    for name, value in (cfg.serve.get("variants") or {}).items():
        if any(s.name == name for s in sources):
            raise ConfigError(f"serve.variants.{name}: variant {name} is given twice (model.path is variant trained)")
        if isinstance(value, str) and value.startswith(WANDB_PREFIX):
            sources.append(VariantSource(str(name), wandb_artifact=value.removeprefix(WANDB_PREFIX)))
        elif isinstance(value, str) and value:
            sources.append(VariantSource(str(name), path=value))
        elif isinstance(value, DictConfig) and (value.get("path") or value.get("wandb_artifact")):
            sources.append(VariantSource(str(name), value.get("path"), value.get("wandb_artifact")))
        else:
            raise ConfigError(f"serve.variants.{name}={value}: give a directory, wandb:ARTIFACT or "
                              "{path: ..., wandb_artifact: ...}")
    if not sources:
        raise ConfigError("model.path is not set and serve.variants is empty: give model.path=DIR (the export to serve)")
    return sources


def load_variant(source: VariantSource, cfg: DictConfig) -> LoadedModel:
    """Load one export as `summarize` does (quantized exports on the CPU, else `device`/`dtype`)."""
    from flavorfusion.models.inference import GroupSummarizer, place_for_inference
    from flavorfusion.models.loading import load_pretrained

    start = time.perf_counter()
    model, tokenizer = load_pretrained(source.path, source.wandb_artifact, key=f"variant {source.name}")
    model, device, dtype, quantized = place_for_inference(model, cfg.device, cfg.dtype)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    summarizer = GroupSummarizer(model, tokenizer, cfg.data)

    def summarize(review_lists: list[list[str]]) -> list[str]:
        groups = [ReviewGroup(f"request-{i}", list(reviews)) for i, reviews in enumerate(review_lists)]
        return summarizer.generate(summarizer.encode(groups), **generation)

    seconds = time.perf_counter() - start
    log.info("variant %s: loaded %s on %s/%s in %.1f s", source.name, source.label, device.type,
             str(dtype).removeprefix("torch."), seconds)
    return LoadedModel(summarize, source.label, {"device": device.type, "quantized": quantized,
                                                 "load_seconds": round(seconds, 3)})
