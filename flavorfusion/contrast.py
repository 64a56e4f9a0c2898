"""What sets each cultural group of a restaurant apart, measured without reference summaries.

Two measures, both over the reviews a group's summary was made from (the `data.k_top_longest` longest, as the
model sees them):

- **Distinctive terms** (`restaurant_terms`): the words and short phrases a group's reviewers use more than the
  restaurant's other groups, by the weighted log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi
  and Quinn, 2008, "Fightin' Words: Lexical Feature Selection and Evaluation for Identifying the Content of
  Political Conflict", Political Analysis 16(4)). For term w, group i against the rest j (counts y, totals n,
  prior a_w = a_0 * w's share of the background, a_0 its total):

      delta = log((y_wi + a_w) / (n_i + a_0 - y_wi - a_w)) - log((y_wj + a_w) / (n_j + a_0 - y_wj - a_w))
      z     = delta / sqrt(1 / (y_wi + a_w) + 1 / (y_wj + a_w))

  The background is the restaurant's own reviews, or the whole table's where the restaurant has fewer than
  `contrast.min_background_reviews`; a_0 is `contrast.prior_weight` times the restaurant's word count. Each kept
  term carries one or two quotes: the shortest sentences of the group's reviews that contain it.
- **Group specificity** (`restaurant_specificity`): each group's summary scored against each group's reviews of the
  same restaurant by ROUGE-1 recall over content words (stop words dropped, Porter stems), averaged over the
  reviews so that a large group is not favoured. A summary is specific when its own group's reviews score
  highest; chance is 1 / the number of groups. A summary shared by all groups scores chance exactly.

Both engines of `summarize` and `evaluate` call these functions, so their figures agree.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from flavorfusion.config.contrast import ContrastConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.rouge import split_sentences

_WORD = re.compile(r"[^\W\d_]+")
# what a tokenizer splitting on apostrophes leaves of contractions ("don't" -> "don", "t"), beside sklearn's list
_CONTRACTION_PARTS = {"don", "didn", "doesn", "isn", "wasn", "weren", "won", "wouldn", "couldn", "shouldn", "aren",
                      "haven", "hasn", "ll", "ve", "re", "s", "t", "d", "m", "im", "ive", "dont"}

# why a group has no terms (the output's `contrast_note`)
ONE_GROUP = "the only group of its restaurant: nothing to contrast with"
NO_RESTAURANT = "no business_id: the restaurant's other groups are unknown"
NONE_SIGNIFICANT = "no term is used more by this group than by the others (z >= {min_z})"
DISABLED = "contrast.enabled=false"


@functools.cache
def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _CONTRACTION_PARTS


def words(text: str) -> list[str]:
    """Lower-cased words (letters only; digits and punctuation split them)."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], max_n: int) -> list[str]:
    """Words that are not stop words, and phrases of up to `max_n` consecutive words that neither start nor end with
    one ("palak paneer", "way too expensive" but not "the food")."""
    stop = stop_words()
    content = [t not in stop and len(t) > 1 for t in tokens]
    found = [t for t, keep in zip(tokens, content, strict=True) if keep]
    for n in range(2, max_n + 1):
        found += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1) if content[i] and content[i + n - 1]]
    return found


@dataclass
class TermCounts:
    """One group's term counts: total uses and the number of reviews using each term."""

    counts: Counter = field(default_factory=Counter)
    reviews: Counter = field(default_factory=Counter)
    n_reviews: int = 0

    @classmethod
    def of(cls, reviews: Iterable[str], max_ngram: int) -> TermCounts:
        found = cls()
        for review in reviews:
            terms = list(ngrams(words(review), max_ngram))
            found.counts.update(terms)
            found.reviews.update(set(terms))
            found.n_reviews += 1
        return found

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Term:
    term: str
    z: float
    count: int


def log_odds_z(y_i: float, n_i: float, y_j: float, n_j: float, a_w: float, a_0: float) -> float:
    """The z-score of the weighted log-odds ratio with an informative Dirichlet prior (module docstring)."""
    rest_i, rest_j = n_i + a_0 - y_i - a_w, n_j + a_0 - y_j - a_w
    if rest_i <= 0 or rest_j <= 0:  # the term is all there is: no odds to compare
        return 0.0
    delta = math.log((y_i + a_w) / rest_i) - math.log((y_j + a_w) / rest_j)
    return delta / math.sqrt(1 / (y_i + a_w) + 1 / (y_j + a_w))


def group_terms(own: TermCounts, others: TermCounts, background: Counter, background_total: int, a_0: float,
                settings: ContrastConf) -> list[Term]:
    """The terms `own` uses more than `others`, z >= settings.min_z, highest first (ties by term)."""
    n_i, n_j = own.total, others.total
    kept = []
    for term, y_i in own.counts.items():
        if own.reviews[term] < settings.min_reviews or not background.get(term):
            continue
        z = log_odds_z(y_i, n_i, others.counts.get(term, 0), n_j, a_0 * background[term] / background_total, a_0)
        if z >= settings.min_z:
            kept.append(Term(term, round(z, 4), y_i))
    kept.sort(key=lambda t: (-t.z, t.term))
    # a word that only ever appears inside a kept phrase says nothing the phrase does not
    phrases = [t for t in kept if " " in t.term]
    kept = [t for t in kept if " " in t.term or not any(t.term in p.term.split() and p.count >= own.counts[t.term]
                                                        for p in phrases)]
    return kept[:settings.max_terms]


def quotes_for(term: str, reviews: Sequence[str], settings: ContrastConf) -> list[str]:
    """The shortest sentences (one per review) of `reviews` holding `term` as consecutive words, cut to
    `settings.quote_chars` around it."""
    wanted = term.split()
    found = []
    for index, review in enumerate(reviews):
        for sentence in split_sentences(review):
            tokens = words(sentence)
            if any(tokens[i:i + len(wanted)] == wanted for i in range(len(tokens) - len(wanted) + 1)):
                found.append((len(sentence), index, sentence))
                break
    found.sort()
    return [cut_around(sentence, term, settings.quote_chars) for _, _, sentence in found[:settings.quotes_per_term]]


def cut_around(sentence: str, term: str, limit: int) -> str:
    if len(sentence) <= limit:
        return sentence
    match = re.search(r"\W+".join(map(re.escape, term.split())), sentence, re.IGNORECASE)
    start = max(0, min(match.start() if match else 0, len(sentence) - limit) - limit // 3)
    text = sentence[start:start + limit - 2].strip()
    return ("…" if start else "") + text + "…"


@dataclass
class GroupContrast:
    """A group's distinctive terms and their quotes, or why there are none."""

    terms: list[Term]
    quotes: list[dict]
    note: str | None

    def columns(self) -> dict:
        """The summarize output's columns."""
        return {"distinctive_terms": [asdict(t) for t in self.terms], "quotes": self.quotes,
                "contrast_note": self.note}


def no_contrast(note: str) -> GroupContrast:
    return GroupContrast([], [], note)


def restaurant_terms(groups: Mapping[str, Sequence[str]], settings: ContrastConf,
                     table_background: Counter | None = None,
                     counts: Mapping[str, TermCounts] | None = None) -> dict[str, GroupContrast]:
    """Each group's distinctive terms against the restaurant's other groups: `groups` is group label -> the reviews
    its summary was made from; `table_background` the whole table's term counts (`table_background`); `counts` the
    groups' term counts where they are already known."""
    if not settings.enabled:
        return {label: no_contrast(DISABLED) for label in groups}
    if len(groups) < 2:
        return {label: no_contrast(ONE_GROUP) for label in groups}
    counts = {label: (counts or {}).get(label) or TermCounts.of(reviews, settings.max_ngram)
              for label, reviews in groups.items()}
    restaurant = Counter()
    for found in counts.values():
        restaurant.update(found.counts)
    n_reviews = sum(found.n_reviews for found in counts.values())
    background = restaurant if n_reviews >= settings.min_background_reviews or not table_background \
        else table_background
    background_total = sum(background.values())
    a_0 = settings.prior_weight * max(1, sum(restaurant.values()))
    result = {}
    for label, own in counts.items():
        others = TermCounts(restaurant - own.counts)
        terms = group_terms(own, others, background, background_total, a_0, settings) if background_total else []
        quotes = [{"term": t.term, "text": q} for t in terms for q in quotes_for(t.term, groups[label], settings)]
        note = None if terms else NONE_SIGNIFICANT.format(min_z=settings.min_z)
        result[label] = GroupContrast(terms, quotes, note)
    return result


def table_background(reviews: Iterable[Sequence[str] | TermCounts], settings: ContrastConf) -> Counter:
    """The whole table's term counts (from each group's reviews, or their counts): the prior's shape for
    restaurants with few reviews."""
    total = Counter()
    for group in reviews:
        total.update(group.counts if isinstance(group, TermCounts) else TermCounts.of(group, settings.max_ngram).counts)
    return total


# ---- specificity ---------------------------------------------------------------------------------------------

@functools.cache
def _stemmer():
    from nltk.stem import porter  # rouge_score's stemmer (nltk comes with rouge-score)

    return porter.PorterStemmer()


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _stemmer().stem(word) if len(word) > 3 else word


def content_words(text: str) -> Counter:
    stop = stop_words()
    return Counter(stem(w) for w in words(text) if w not in stop)


def recall(summary: Counter, review: Counter) -> float:
    """ROUGE-1 recall of a review's content words by a summary (clipped counts)."""
    total = sum(review.values())
    return sum(min(n, summary[w]) for w, n in review.items() if w in summary) / total if total else 0.0


def similarity(summary: str | Counter, reviews: Sequence[Counter]) -> float:
    """Mean ROUGE-1 recall of a group's reviews (those with content words) by a summary."""
    summary = content_words(summary) if isinstance(summary, str) else summary
    scored = [recall(summary, review) for review in reviews if review]
    return sum(scored) / len(scored) if scored else 0.0


@dataclass
class RestaurantSpecificity:
    """One restaurant: for each group, its summary's similarity to its own reviews and to the closest other
    group's, and whether its own are the closest (ties are not specific)."""

    business_id: str
    groups: list[dict]

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def specific(self) -> int:
        return sum(g["specific"] for g in self.groups)

    def as_dict(self) -> dict:
        margins = [g["margin"] for g in self.groups]
        return {"business_id": self.business_id, "n_groups": self.n_groups, "specific": self.specific,
                "share_specific": round(self.specific / self.n_groups, 4), "chance": round(1 / self.n_groups, 4),
                "mean_margin": round(sum(margins) / len(margins), 4), "groups": self.groups}


def restaurant_specificity(business_id: str, summaries: Mapping[str, str],
                           reviews: Mapping[str, Sequence[str]]) -> RestaurantSpecificity | None:
    """Specificity of one restaurant's summaries (group label -> summary; group label -> the reviews it was made
    from); None below two summarized groups."""
    labels = sorted(label for label in summaries if label in reviews)
    if len(labels) < 2:
        return None
    review_words = {label: [content_words(r) for r in reviews[label]] for label in labels}
    groups = []
    for label in labels:
        summary = content_words(summaries[label] or "")
        scores = {other: similarity(summary, review_words[other]) for other in labels}
        best_other = max((o for o in labels if o != label), key=lambda o: (scores[o], o))
        margin = scores[label] - scores[best_other]
        groups.append({"group": label, "own": round(scores[label], 4), "closest_other": best_other,
                       "closest_other_score": round(scores[best_other], 4), "margin": round(margin, 4),
                       "specific": margin > 0})
    return RestaurantSpecificity(str(business_id), groups)


def specificity_report(restaurants: Iterable[RestaurantSpecificity]) -> dict:
    """Over every restaurant with two or more summarized groups: the share of specific summaries, chance beside it
    (the mean of 1 / groups over the summaries), the mean margin, and each restaurant's own figures."""
    records = sorted((r for r in restaurants if r is not None), key=lambda r: r.business_id)
    summaries = sum(r.n_groups for r in records)
    if not summaries:
        return {"restaurants": 0, "summaries": 0, "share_specific": None, "chance": None, "mean_margin": None,
                "per_restaurant": []}
    return {
        "restaurants": len(records),
        "summaries": summaries,
        "specific": sum(r.specific for r in records),
        "share_specific": round(sum(r.specific for r in records) / summaries, 4),
        "chance": round(len(records) / summaries, 4),  # the mean over summaries of 1 / their restaurant's groups
        "mean_margin": round(sum(g["margin"] for r in records for g in r.groups) / summaries, 4),
        "per_restaurant": [r.as_dict() for r in records],
    }


def specificity_line(report: dict) -> str:
    """One line for a report: 'specific: 62.0% of 200 summaries in 80 restaurants (chance 45.0%), margin +0.031'."""
    if not report["summaries"]:
        return "specificity: no restaurant with two or more summarized groups"
    return (f"specific: {100 * report['share_specific']:.1f}% of {report['summaries']} summaries in "
            f"{report['restaurants']} restaurants (chance {100 * report['chance']:.1f}%), mean margin "
            f"{report['mean_margin']:+.3f}")


# ---- review groups ------------------------------------------------------------------------------------------

def label_of(group: ReviewGroup) -> str:
    return "all" if group.group is None else str(group.group)


def by_restaurant(groups: Iterable[ReviewGroup]) -> dict[str, list[ReviewGroup]]:
    """business_id -> its groups (those without a business_id are left out)."""
    found: dict[str, list[ReviewGroup]] = {}
    for group in groups:
        if group.business_id is not None:
            found.setdefault(str(group.business_id), []).append(group)
    return found


def _by_label(groups: Iterable[ReviewGroup]) -> dict[str, ReviewGroup]:
    found: dict[str, ReviewGroup] = {}
    for group in sorted(groups, key=lambda g: g.id):
        found.setdefault(label_of(group), group)  # a label twice in one restaurant: the first id counts
    return found


def restaurant_contrast(groups: Sequence[ReviewGroup], selection: ReviewSelection, settings: ContrastConf,
                        background: Counter | None = None,
                        counts: Mapping[str, TermCounts] | None = None) -> dict[str, GroupContrast]:
    """Group id -> its distinctive terms, for the groups of one restaurant (the reviews each summary was made from:
    `selection.for_validation`); `counts`: group id -> its term counts, where already known."""
    labelled = _by_label(groups)
    known = {label: counts[g.id] for label, g in labelled.items() if counts and g.id in counts}
    contrast = restaurant_terms({label: selection.for_validation(g) for label, g in labelled.items()}, settings,
                                background, known)
    return {g.id: contrast[label_of(g)] for g in groups}


def group_contrast(group: ReviewGroup, restaurant: Sequence[ReviewGroup] | None, selection: ReviewSelection,
                   settings: ContrastConf, background: Counter | None = None) -> GroupContrast:
    """One group's contrast within its restaurant (`restaurant`: all its groups, None without a business_id)."""
    if not settings.enabled:
        return no_contrast(DISABLED)
    if restaurant is None:
        return no_contrast(NO_RESTAURANT)
    return restaurant_contrast(restaurant, selection, settings, background)[group.id]


def specificity_of(business_id: str, groups: Sequence[ReviewGroup], summaries: Mapping[str, str],
                   selection: ReviewSelection) -> RestaurantSpecificity | None:
    """One restaurant's specificity: `summaries` maps group ids to summaries (groups without one are left out)."""
    labelled = {label: g for label, g in _by_label(groups).items() if summaries.get(g.id) is not None}
    return restaurant_specificity(business_id, {label: summaries[g.id] for label, g in labelled.items()},
                                  {label: selection.for_validation(g) for label, g in labelled.items()})


def table_specificity(groups: Iterable[ReviewGroup], summaries: Mapping[str, str],
                      selection: ReviewSelection) -> dict:
    """`specificity_report` over every restaurant of a table."""
    return specificity_report(specificity_of(business_id, restaurant, summaries, selection)
                              for business_id, restaurant in by_restaurant(groups).items())
