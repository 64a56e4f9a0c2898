"""`contrast`: what sets each cultural group of a restaurant apart (conf/contrast/*.yaml) -> `flavorfusion.contrast`.

`summarize` writes each group's distinctive terms and quotes and reports how specific the summaries are; `evaluate`
reports the same for every variant. The conf file holds the explanations; the defaults live here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require


@dataclass
class ContrastConf(Schema):
    enabled: bool = True
    min_z: float = 1.96
    max_terms: int = 8
    max_ngram: int = 2
    min_reviews: int = 2
    prior_weight: float = 0.1
    min_background_reviews: int = 50
    quotes_per_term: int = 1
    quote_chars: int = 160

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.min_z >= 0, f"{key}.min_z", node.min_z, "must be 0 or more")
        for name in ("max_terms", "max_ngram", "min_reviews", "min_background_reviews", "quotes_per_term"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        require(node.max_ngram <= 3, f"{key}.max_ngram", node.max_ngram, "must be 1, 2 or 3")
        require(node.prior_weight > 0, f"{key}.prior_weight", node.prior_weight, "must be positive")
        require(node.quote_chars >= 40, f"{key}.quote_chars", node.quote_chars, "must be at least 40")
