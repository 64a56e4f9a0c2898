import pytest
from rouge_score import rouge_scorer

from flavorfusion.metrics import rouge, rouge_per_example, split_sentences


def test_known_values():
    # 5 of 6 unigrams shared both ways: P = R = F = 5/6
    scores = rouge_per_example("the cat sat on the mat", ["the cat was on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 5 / 6)
    assert rouge_per_example("tasty ramen", ["tasty ramen"])["rougeL"] == pytest.approx(100)
    assert rouge_per_example("tasty ramen", ["slow service"])["rouge2"] == 0


def test_matches_rouge_score_with_stemming():
    pred, ref = "The dumplings were delicious. Service was slow.", "Delicious dumplings! The service is slow."
    expected = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(ref, pred)
    ours = rouge_per_example(pred, [ref])
    for name in ("rouge1", "rouge2", "rougeL"):
        assert ours[name] == pytest.approx(100 * expected[name].fmeasure)


def test_several_references_take_the_best():
    scores = rouge_per_example("great tacos", ["awful noodles", "great tacos"])
    assert scores["rouge1"] == pytest.approx(100)


def test_rougelsum_uses_sentences():
    assert split_sentences("Good food. Bad service! Fair?") == "Good food.\nBad service!\nFair?"
    pred = "good food. bad service."
    lsum = rouge_per_example(pred, ["bad service. good food."])
    assert lsum["rougeLsum"] == pytest.approx(100) and lsum["rougeL"] < 100


def test_corpus_mean_and_length_mismatch():
    corpus = rouge(["a b", "c d"], [["a b"], ["x y"]])
    assert corpus["rouge1"] == pytest.approx(50)
    with pytest.raises(ValueError):
        rouge(["a"], [])
