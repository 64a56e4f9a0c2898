"""`generation`: how every stage decodes (conf/generation/*.yaml), passed to
`flavorfusion.models.generation.generate_ids` by validation, evaluate, summarize and serve."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

CACHES = ("auto", "dynamic", "static")


@dataclass
class GenerationConf(Schema):
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    num_beams: int = 1
    cache: str = "auto"
    batch_invariant: bool = True

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.max_new_tokens > 0, f"{key}.max_new_tokens", node.max_new_tokens, "must be a positive integer")
        require(0 <= node.min_new_tokens <= node.max_new_tokens, f"{key}.min_new_tokens", node.min_new_tokens,
                f"must be in [0, {key}.max_new_tokens={node.max_new_tokens}]")
        require(node.num_beams > 0, f"{key}.num_beams", node.num_beams, "must be a positive integer")
        require(node.cache in CACHES, f"{key}.cache", node.cache, f"must be one of {', '.join(CACHES)}")
