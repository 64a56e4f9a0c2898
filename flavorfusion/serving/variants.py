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



@dataclass(frozen=True)
class VariantSource:
    """A served variant: its name and its model source (`model.name_or_path` forms)."""

    name: str
    name_or_path: str

    @property
    def label(self) -> str:
        return self.name_or_path


@dataclass
class LoadedModel:
    """A loaded variant: `summarize(list of review lists) -> list of summaries`, blocking."""

    summarize: Callable[[list[list[str]]], list[str]]
    model: str  # what it was loaded from
    info: dict = field(default_factory=dict)


def variant_sources(cfg: DictConfig) -> list[VariantSource]:
    """`model.name_or_path` as variant `trained`, then `serve.variants` (name -> a model source); the schema
    (flavorfusion.config.serve) has checked each source's form."""
    sources = [VariantSource("trained", cfg.model.name_or_path)] if cfg.model.name_or_path else []
    sources += [VariantSource(str(name), str(source)) for name, source in cfg.serve.variants.items()]
    if not sources:
        raise ConfigError("model.name_or_path is not set and serve.variants is empty: give model.name_or_path=DIR "
                          "(the export to serve)")
    return sources


def load_variant(source: VariantSource, cfg: DictConfig) -> LoadedModel:
    """Load one export as `summarize` does (quantized exports on the CPU, else `device`/`dtype`)."""
    from flavorfusion.models.inference import inference_summarizer
    from flavorfusion.models.loading import load_pretrained

    start = time.perf_counter()
    key = "model.name_or_path" if source.name == "trained" else f"serve.variants.{source.name}"
    model, tokenizer = load_pretrained(source.name_or_path, key=key)
    summarizer, device, dtype, quantized = inference_summarizer(model, tokenizer, cfg.data, device=cfg.device,
                                                                dtype=cfg.dtype, attention=cfg.model.attention)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)

    def summarize(review_lists: list[list[str]]) -> list[str]:
        groups = [ReviewGroup(f"request-{i}", list(reviews)) for i, reviews in enumerate(review_lists)]
        return summarizer.generate(summarizer.encode(groups), **generation)

    seconds = time.perf_counter() - start
    log.info("variant %s: loaded %s on %s/%s in %.1f s", source.name, source.label, device.type,
             str(dtype).removeprefix("torch."), seconds)
    return LoadedModel(summarize, source.label, {"device": device.type, "quantized": quantized,
                                                 "load_seconds": round(seconds, 3)})
