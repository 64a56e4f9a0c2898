"""Which reviews of a group a model sees: the k longest, and for training the original code's augmentation.

Training, validation, `evaluate` and the extractive baselines all select through this module, so a model and a
baseline scored on the same group see the same reviews.
"""

import random
from dataclasses import dataclass

from flavorfusion.data.record import ReviewGroup


def longest_reviews(reviews: list[str], k: int | None) -> list[str]:
    """The k longest reviews, longest first (all of them when k is None)."""
    return sorted(reviews, key=len, reverse=True)[:k]


@dataclass(frozen=True)
class ReviewSelection:
    """`data.k_top_longest`, `data.max_docs_per_review` and the seed that shuffles training chunks."""

    k_top_longest: int | None = 20
    max_docs_per_review: int = 5
    seed: int = 42

    @classmethod
    def from_config(cls, data) -> "ReviewSelection":
        """From a data config: `data.k_top_longest`, `data.max_docs_per_review`, `data.seed`."""
        return cls(data.k_top_longest, data.max_docs_per_review, data.seed)

    def for_validation(self, group: ReviewGroup) -> list[str]:
        return longest_reviews(group.reviews, self.k_top_longest)

    def for_training(self, group: ReviewGroup) -> list[list[str]]:
        """The original code's augmentation: keep the k longest reviews, shuffle them, and cut them into chunks
        of `max_docs_per_review` that become separate examples sharing the summary. The shuffle is seeded per
        group, so it is the same in every worker, epoch and rerun."""
        kept = longest_reviews(group.reviews, self.k_top_longest)
        random.Random(f"{self.seed}:{group.id}").shuffle(kept)
        size = self.max_docs_per_review
        return [kept[i : i + size] for i in range(0, len(kept), size)]
