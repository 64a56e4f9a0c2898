"""ROUGE with `rouge_score` directly: `evaluate.load("rouge")` and nltk's sentence splitter both need
downloads that fail offline.

With several reference summaries, `multi_reference` says how an example's per-reference F-measures
combine: `mean` (FewSum's `GoogleRouge(avg_rouge=True)` and most multi-reference results) or `max`
(the best reference, `rouge_score`'s `score_multi`)."""

import re

from rouge_score import rouge_scorer

from flavorfusion.config.stage import MULTI_REFERENCE

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# `rouge_per_example(..., with_max=True)`: the ROUGE types (references combined by `multi_reference`),
# then the same with the best reference (`rouge1_max`, ...)
SCORE_NAMES = (*ROUGE_TYPES, *(f"{name}_max" for name in ROUGE_TYPES))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences by end punctuation (nltk's splitter needs a download that fails offline)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def sentence_lines(text: str) -> str:
    """One sentence per line, the form rougeLsum expects."""
    return "\n".join(split_sentences(text))


def check_multi_reference(value: str) -> str:
    """The argument is one this module knows (the config key `metrics.multi_reference` is checked by its schema)."""
    if value not in MULTI_REFERENCE:
        raise ValueError(f"multi_reference={value!r} must be one of {', '.join(MULTI_REFERENCE)}")
    return value


_SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_per_reference(prediction: str, references: list[str] | str) -> list[dict[str, float]]:
    """F-measure x 100 of each ROUGE type against each reference, in reference order."""
    if isinstance(references, str):
        references = [references]
    prediction = sentence_lines(prediction)
    return [{name: 100 * score.fmeasure for name, score in _SCORER.score(sentence_lines(r), prediction).items()}
            for r in references]


def aggregate(per_reference: list[dict[str, float]], multi_reference: str = "mean") -> dict[str, float]:
    """One example's score from its per-reference scores: their mean or their max (0 without references)."""
    check_multi_reference(multi_reference)
    if not per_reference:
        return {name: 0.0 for name in ROUGE_TYPES}
    if multi_reference == "max":
        return {name: max(s[name] for s in per_reference) for name in ROUGE_TYPES}
    return {name: sum(s[name] for s in per_reference) / len(per_reference) for name in ROUGE_TYPES}


def rouge_per_example(prediction: str, references: list[str] | str, multi_reference: str = "mean",
                      with_max: bool = False) -> dict[str, float]:
    """F-measure x 100 of each ROUGE type, references combined by `multi_reference`; `with_max` adds
    the best-reference scores as `<type>_max`."""
    check_multi_reference(multi_reference)
    per_reference = rouge_per_reference(prediction, references)
    scores = aggregate(per_reference, multi_reference)
    if with_max:
        scores.update({f"{name}_max": value for name, value in aggregate(per_reference, "max").items()})
    return scores


def rouge(predictions: list[str], references: list[list[str]], multi_reference: str = "mean") -> dict[str, float]:
    """Corpus ROUGE: the mean over examples of per-example F-measures (x 100)."""
    check_multi_reference(multi_reference)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        return {name: 0.0 for name in ROUGE_TYPES}
    per_example = [rouge_per_example(p, r, multi_reference) for p, r in zip(predictions, references, strict=True)]
    return {name: sum(s[name] for s in per_example) / len(per_example) for name in ROUGE_TYPES}
