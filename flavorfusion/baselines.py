"""Extractive reference points that need no weights: does a fine-tuned model beat picking a review?

`model=random_review | centroid_review | lexrank` in `python -m flavorfusion.evaluate`. Each baseline
maps one review group (a list of reviews) to a summary string.
"""

import random

import numpy as np

from flavorfusion.rouge import split_sentences


def _tfidf(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    # reviews are short: a failed fit (only stop words) falls back to raw term counts
    try:
        return TfidfVectorizer(stop_words="english").fit_transform(texts)
    except ValueError:
        return TfidfVectorizer().fit_transform(texts)


class ExtractiveBaseline:
    """One review group -> one summary; `summarize` is the whole interface evaluate needs."""

    trainable = False
    name = "baseline"

    def summarize(self, reviews: list[str], group_id: str = "") -> str:
        raise NotImplementedError


class RandomReview(ExtractiveBaseline):
    """A review drawn at random (seeded per group, so reruns pick the same one)."""

    name = "random_review"

    def __init__(self, seed: int = 42):
        self.seed = seed

    def summarize(self, reviews: list[str], group_id: str = "") -> str:
        return random.Random(f"{self.seed}:{group_id}").choice(reviews)


class CentroidReview(ExtractiveBaseline):
    """The review whose TF-IDF vector is closest (cosine) to the centroid of the group's reviews."""

    name = "centroid_review"

    def summarize(self, reviews: list[str], group_id: str = "") -> str:
        if len(reviews) == 1:
            return reviews[0]
        vectors = _tfidf(reviews)  # rows are L2-normalized
        centroid = np.asarray(vectors.mean(axis=0)).ravel()
        return reviews[int(np.argmax(vectors @ centroid))]


def lexrank_scores(similarity: np.ndarray, threshold: float | None = 0.1, damping: float = 0.85,
                   tolerance: float = 1e-6, max_iterations: int = 200) -> np.ndarray:
    """LexRank centrality (Erkan & Radev, 2004): PageRank over the sentence-similarity graph, by power
    iteration. With `threshold`, edges are the pairs at least that similar (unweighted LexRank);
    without, the cosine weights themselves (continuous LexRank)."""
    n = similarity.shape[0]
    graph = (similarity >= threshold).astype(float) if threshold is not None else similarity.copy()
    np.fill_diagonal(graph, 0.0)
    degree = graph.sum(axis=1, keepdims=True)
    transition = np.divide(graph, degree, out=np.full_like(graph, 1.0 / n), where=degree > 0)
    scores = np.full(n, 1.0 / n)
    for _ in range(max_iterations):
        updated = (1 - damping) / n + damping * transition.T @ scores
        if np.abs(updated - scores).sum() < tolerance:
            return updated
        scores = updated
    return scores


class LexRank(ExtractiveBaseline):
    """The most central sentences of all reviews (LexRank over TF-IDF cosine), in review order,
    until `max_words` is reached."""

    name = "lexrank"

    def __init__(self, max_sentences: int = 3, max_words: int = 60, threshold: float | None = 0.1):
        self.max_sentences, self.max_words, self.threshold = max_sentences, max_words, threshold

    def summarize(self, reviews: list[str], group_id: str = "") -> str:
        sentences = [s for review in reviews for s in split_sentences(review)]
        if len(sentences) <= 1:
            return " ".join(sentences)
        vectors = _tfidf(sentences)
        scores = lexrank_scores((vectors @ vectors.T).toarray(), self.threshold)
        chosen, words = [], 0
        for index in np.argsort(-scores, kind="stable"):
            if len(chosen) == self.max_sentences or (chosen and words >= self.max_words):
                break
            chosen.append(int(index))
            words += len(sentences[index].split())
        return " ".join(sentences[i] for i in sorted(chosen))
