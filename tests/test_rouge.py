
import pytest
from rouge_score import rouge_scorer

from flavorfusion import baselines
from flavorfusion.errors import ConfigError
from flavorfusion.rouge import rouge, rouge_per_example, sentence_lines, split_sentences

from .conftest import compose_train


def test_known_values():
    # 5 of 6 unigrams shared both ways: P = R = F = 5/6
    scores = rouge_per_example("the cat sat on the mat", ["the cat was on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 5 / 6)
    assert rouge_per_example("tasty ramen", ["tasty ramen"])["rougeL"] == pytest.approx(100)
    assert rouge_per_example("tasty ramen", ["slow service"])["rouge2"] == 0


def test_stemming_by_hand():
    # rouge_score's tokenizer lowercases, drops punctuation and Porter-stems tokens longer than 3 characters:
    # "noodles"/"noodle" -> noodl, "tasted"/"tasting" -> tast. Prediction: the noodl tast great (4 tokens);
    # reference: great tast noodl (3). 3 shared: P = 3/4, R = 1, F1 = 6/7. Without stemming only "great" is shared.
    scores = rouge_per_example("The noodles tasted great!", ["Great tasting noodle."])
    assert scores["rouge1"] == pytest.approx(100 * 6 / 7)
    # bigrams: prediction (the noodl)(noodl tast)(tast great), reference (great tast)(tast noodl): none shared
    assert scores["rouge2"] == 0
    # LCS of "the noodl tast great" and "great tast noodl" is one token: P = 1/4, R = 1/3, F = 2/7
    assert scores["rougeL"] == pytest.approx(100 * 2 / 7)


# Worked by hand: the prediction has 5 unigrams and 4 bigrams.
# "great tacos": 2 of 2 unigrams shared, P = 2/5, R = 1, F1 = 4/7; 1 of 1 bigram, P = 1/4, R = 1, F2 = 2/5;
#   LCS "great tacos" = 2 tokens, FL = 4/7.
# "awful noodles and slow service": only "and" shared, P = R = F1 = FL = 1/5; no bigram, F2 = 0.
PREDICTION = "great tacos and fresh salsa"
REFERENCES = ["great tacos", "awful noodles and slow service"]
MEAN = {"rouge1": 100 * (4 / 7 + 1 / 5) / 2, "rouge2": 100 * (2 / 5 + 0) / 2, "rougeL": 100 * (4 / 7 + 1 / 5) / 2}
MAX = {"rouge1": 100 * 4 / 7, "rouge2": 100 * 2 / 5, "rougeL": 100 * 4 / 7}


def test_hand_example_per_reference():
    from flavorfusion.rouge import aggregate, rouge_per_reference

    per_reference = rouge_per_reference(PREDICTION, REFERENCES)
    expected = [{"rouge1": 100 * 4 / 7, "rouge2": 100 * 2 / 5, "rougeL": 100 * 4 / 7},
                {"rouge1": 100 / 5, "rouge2": 0.0, "rougeL": 100 / 5}]
    assert [{name: s[name] for name in MEAN} for s in per_reference] == [pytest.approx(e) for e in expected]
    assert {name: aggregate(per_reference, "mean")[name] for name in MEAN} == pytest.approx(MEAN)
    assert {name: aggregate(per_reference, "max")[name] for name in MAX} == pytest.approx(MAX)
    assert aggregate([], "mean") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}
    assert rouge_per_reference(PREDICTION, REFERENCES[0]) == per_reference[:1]  # one reference as a string


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
    # by hand: as one sequence, "good food bad servic" and "bad servic good food" share an LCS of 2 of 4 tokens
    # (rougeL = 50); sentence by sentence (rougeLsum, the union LCS over sentences) every token matches (100)
    pred = "good food. bad service."
    lsum = rouge_per_example(pred, ["bad service. good food."])
    assert lsum["rougeLsum"] == pytest.approx(100) and lsum["rougeL"] == pytest.approx(50)
    # without end punctuation there is one sentence: rougeLsum is rougeL
    flat = rouge_per_example("good food bad service", ["bad service good food"])
    assert flat["rougeLsum"] == pytest.approx(flat["rougeL"]) == pytest.approx(50)


def test_corpus_mean_and_length_mismatch():
    corpus = rouge(["a b", "c d"], [["a b"], ["x y"]])
    assert corpus["rouge1"] == pytest.approx(50)
    with pytest.raises(ValueError):
        rouge(["a"], [])
