import pytest
from rouge_score import rouge_scorer

from flavorfusion import baselines
from flavorfusion.errors import ConfigError
from flavorfusion.metrics import rouge, rouge_per_example, sentence_lines, split_sentences

from .conftest import compose_train


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


# Worked by hand: the prediction has 5 unigrams and 4 bigrams.
# "great tacos": 2 of 2 unigrams shared, P = 2/5, R = 1, F1 = 4/7; 1 of 1 bigram, P = 1/4, R = 1, F2 = 2/5;
#   LCS "great tacos" = 2 tokens, FL = 4/7.
# "awful noodles and slow service": only "and" shared, P = R = F1 = FL = 1/5; no bigram, F2 = 0.
PREDICTION = "great tacos and fresh salsa"
REFERENCES = ["great tacos", "awful noodles and slow service"]
MEAN = {"rouge1": 100 * (4 / 7 + 1 / 5) / 2, "rouge2": 100 * (2 / 5 + 0) / 2, "rougeL": 100 * (4 / 7 + 1 / 5) / 2}
MAX = {"rouge1": 100 * 4 / 7, "rouge2": 100 * 2 / 5, "rougeL": 100 * 4 / 7}


def test_hand_example_agrees_with_rouge_score_per_reference():
    scorer = rouge_scorer.RougeScorer(list(MEAN), use_stemmer=True)
    per_reference = [scorer.score(r, PREDICTION) for r in REFERENCES]
    for name in MEAN:
        fs = [100 * s[name].fmeasure for s in per_reference]
        assert sum(fs) / len(fs) == pytest.approx(MEAN[name]) and max(fs) == pytest.approx(MAX[name])


def test_several_references_are_averaged_by_default_or_take_the_best():
    default = rouge_per_example(PREDICTION, REFERENCES)
    mean = rouge_per_example(PREDICTION, REFERENCES, "mean")
    best = rouge_per_example(PREDICTION, REFERENCES, "max")
    for name in MEAN:
        assert default[name] == pytest.approx(MEAN[name]) and mean[name] == default[name]
        assert best[name] == pytest.approx(MAX[name])
    # rouge_score's own best-reference choice agrees with "max"
    multi = rouge_scorer.RougeScorer(list(MAX), use_stemmer=True).score_multi(REFERENCES, PREDICTION)
    assert {name: best[name] for name in MAX} == pytest.approx({k: 100 * s.fmeasure for k, s in multi.items()})
    both = rouge_per_example(PREDICTION, REFERENCES, with_max=True)
    assert both["rouge1"] == pytest.approx(MEAN["rouge1"]) and both["rouge1_max"] == pytest.approx(MAX["rouge1"])
    assert {"rougeLsum", "rougeLsum_max"} <= set(both)


def test_corpus_rouge_aggregates_per_example_then_averages():
    predictions, references = [PREDICTION, "tasty ramen"], [REFERENCES, ["tasty ramen", "slow service"]]
    # second example: 100 against its first reference, 0 against its second
    assert rouge(predictions, references)["rouge1"] == pytest.approx((MEAN["rouge1"] + 50) / 2)
    assert rouge(predictions, references, "max")["rouge1"] == pytest.approx((MAX["rouge1"] + 100) / 2)


def test_bad_multi_reference_is_refused_by_the_config_and_by_the_functions():
    from flavorfusion.checks import validate_train

    with pytest.raises(ConfigError, match=r"^metrics\.multi_reference=median must be one of mean, max$"):
        validate_train(compose_train(["experiment=quickstart", "metrics.multi_reference=median"]), check_files=False)
    message = r"^multi_reference='median' must be one of mean, max$"
    with pytest.raises(ValueError, match=message):
        rouge_per_example(PREDICTION, REFERENCES, "median")
    with pytest.raises(ValueError, match=message):
        rouge([PREDICTION], [REFERENCES], "median")


def test_training_configs_wire_multi_reference_into_the_summarizer():
    for model in ("tiny", "primera"):
        assert compose_train([f"model={model}"]).model.multi_reference == "mean"
        assert compose_train([f"model={model}", "metrics.multi_reference=max"]).model.multi_reference == "max"


def test_rougelsum_uses_sentences():
    assert split_sentences("Good food. Bad service! Fair?") == ["Good food.", "Bad service!", "Fair?"]
    assert sentence_lines("Good food.  Bad service! Fair?") == "Good food.\nBad service!\nFair?"
    assert baselines.split_sentences is split_sentences  # one splitter for ROUGE and the extractive baselines
    pred = "good food. bad service."
    lsum = rouge_per_example(pred, ["bad service. good food."])
    assert lsum["rougeLsum"] == pytest.approx(100) and lsum["rougeL"] < 100


def test_corpus_mean_and_length_mismatch():
    corpus = rouge(["a b", "c d"], [["a b"], ["x y"]])
    assert corpus["rouge1"] == pytest.approx(50)
    with pytest.raises(ValueError):
        rouge(["a"], [])
