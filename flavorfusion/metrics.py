"""ROUGE with `rouge_score` directly: `evaluate.load("rouge")` and nltk's sentence splitter both need
downloads that fail offline."""

import re

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, the form rougeLsum expects (nltk-free)."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


_SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_per_example(prediction: str, references: list[str]) -> dict[str, float]:
    """F-measure x 100 of each ROUGE type; with several references, the best reference counts."""
    if isinstance(references, str):
        references = [references]
    scores = _SCORER.score_multi([split_sentences(r) for r in references], split_sentences(prediction))
    return {name: 100 * score.fmeasure for name, score in scores.items()}


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus ROUGE: the mean of per-example F-measures (x 100)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        return {name: 0.0 for name in ROUGE_TYPES}
    per_example = [rouge_per_example(p, r) for p, r in zip(predictions, references, strict=True)]
    return {name: sum(s[name] for s in per_example) / len(per_example) for name in ROUGE_TYPES}
