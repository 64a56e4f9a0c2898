"""`grouping`: which cultural group a review belongs to (conf/grouping/*.yaml) -> `flavorfusion.data.grouping`."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from flavorfusion.config.schema import Schema, require

CENSUS_YEARS = (2000, 2010, 2020)


@dataclass
class NoGroupingConf(Schema):
    _target_: str = "flavorfusion.data.grouping.NoGrouping"
    min_group_size: int = 3  # smaller groups are not written (counted in the report)

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.min_group_size >= 1, f"{key}.min_group_size", node.min_group_size, "must be at least 1")


@dataclass
class LanguageGroupingConf(NoGroupingConf):
    _target_: str = "flavorfusion.data.grouping.LanguageGrouping"
    # abstention bounds (docs/prepare.md; chosen with benchmarks/bench_grouping.py): below them, `unknown`
    min_confidence: float = 0.5  # lingua's confidence in the top language
    min_margin: float = 0.1  # the top language's confidence minus the second one's
    min_words: int = 3  # words of an original in a script several languages share
    min_han_chars: int = 8  # Han characters of an original without kana or Hangul

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        for name in ("min_confidence", "min_margin"):
            require(0 <= node[name] <= 1, f"{key}.{name}", node[name], "must be in [0, 1]")
        for name in ("min_words", "min_han_chars"):
            require(node[name] >= 1, f"{key}.{name}", node[name], "must be at least 1")


@dataclass
class SurnameGroupingConf(NoGroupingConf):
    _target_: str = "flavorfusion.data.grouping.SurnameGrouping"
    min_probability: float = 0.7  # the census category's share must reach this, else `unknown`
    census_year: int = 2020

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(0 < node.min_probability <= 1, f"{key}.min_probability", node.min_probability, "must be in (0, 1]")
        require(node.census_year in CENSUS_YEARS, f"{key}.census_year", node.census_year,
                f"must be one of {', '.join(map(str, CENSUS_YEARS))}")
