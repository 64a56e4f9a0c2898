"""Tests that catch the plausible faults `benchmarks/mutation_check.py` plants in the modules added since its first
run: the study report and its choice of runs, the Optuna journal sweeper, serving security and limits, the grouping
decisions and the model's limits. Each test names the fault it is there for; ties and edge values included."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from flavorfusion.errors import DataError

# ---- the study report and its choice of runs ----------------------------------------------------------------


def study_of(*runs):
    from flavorfusion.studies import Study
    from flavorfusion.studies.sweep import mark_pareto

    runs = list(runs)
    mark_pareto(runs)
    return Study("sweep", runs, [])


def run(num: int, rouge: float, size: float | None, state: str = "COMPLETE", **metrics):
    from flavorfusion.studies import Run

    values = {"best/rougeL": rouge, **({"model/size_mb": size} if size is not None else {}), **metrics}
    return Run(num, state=state, metrics=values)


def test_study_pareto_keeps_runs_tied_on_both_objectives():
    study = study_of(run(0, 20.0, 1.0), run(1, 20.0, 1.0), run(2, 19.0, 2.0))
    assert [r.pareto for r in study.runs] == [True, True, False]


def test_study_pareto_keeps_a_smaller_worse_run_and_drops_failed_ones():
    study = study_of(run(0, 20.0, 2.0), run(1, 18.0, 1.0), run(2, 25.0, 0.5, state="FAILED"))
    assert [r.pareto for r in study.runs] == [True, True, False]


def test_study_choice_breaks_a_rouge_tie_toward_the_smaller_export_and_honours_the_budget_edge():
    from flavorfusion.studies import choose

    study = study_of(run(0, 20.0, 2.0), run(1, 20.0, 1.0), run(2, 15.0, 0.5))
    assert choose(study).num == 1
    assert choose(study, max_size_mb=1.0).num == 1  # a run exactly at the budget is within it
    assert choose(study, max_size_mb=0.99).num == 2


def test_study_pick_refuses_a_run_that_did_not_complete():
    from flavorfusion.studies import choose

    study = study_of(run(0, 20.0, 2.0), run(1, 30.0, 1.0, state="FAILED"))
    assert choose(study, pick=0).num == 0
    with pytest.raises(DataError, match="no complete run #1"):
        choose(study, pick=1)


def test_study_rouge_is_the_exported_checkpoints_not_the_last_epochs():
    r = run(0, 20.0, 1.0, **{"val/rougeL": 12.0})
    assert r.rouge_l == 20.0


# ---- the Optuna journal sweeper ---------------------------------------------------------------------------------


class FakeLauncher:
    """Runs no job: each returns its x (the objective), and records what it was asked to launch."""

    def __init__(self):
        self.launched: list[list[str]] = []

    def launch(self, overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        returns = []
        for i, job in enumerate(overrides):
            self.launched.append(list(job))
            value = float(next(o.split("=", 1)[1] for o in job if o.startswith("x=")))
            ret = JobReturn(overrides=list(job), working_dir=f"job{initial_job_idx + i}")
            ret.status = JobStatus.COMPLETED
            ret.return_value = value
            returns.append(ret)
        return returns


def sweeper_in(tmp_path, **params):
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: F401  (the parser it uses)
    from hydra_plugins.optuna_journal_sweeper.sweeper import OptunaJournalSweeper

    sweeper = OptunaJournalSweeper(**{"direction": "maximize", "params": {"x": "range(0,100)"},
                                      "sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": 0}, **params})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"name": "t"}},
                                       "optimized_metric": None})
    sweeper.hydra_context = SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=lambda *a: None))
    sweeper.launcher = FakeLauncher()
    return sweeper


def journal_study(tmp_path):
    import optuna

    from flavorfusion.sweep_files import JOURNAL

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / JOURNAL)))
    return optuna.load_study(study_name="t", storage=storage)


def test_sweeper_runs_exactly_n_trials_when_rounds_do_not_divide_them(tmp_path):
    sweeper = sweeper_in(tmp_path, n_trials=3, n_jobs=2)
    sweeper._sweep([])
    assert len(sweeper.launcher.launched) == 3 and len(journal_study(tmp_path).trials) == 3


def test_sweeper_refuses_zero_trials(tmp_path):
    from flavorfusion.errors import ConfigError

    with pytest.raises(ConfigError, match="n_trials and hydra.sweeper.n_jobs must be at least 1"):
        sweeper_in(tmp_path, n_trials=0, n_jobs=1)._sweep([])


def test_sweeper_reruns_an_interrupted_trial_and_does_not_count_it(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from flavorfusion.sweep_files import JOURNAL, TRIAL_INTERRUPTED

    first = sweeper_in(tmp_path, n_trials=1, n_jobs=1)
    first._sweep([])  # one trial done; the sweeper's own search space
    _, space = __import__("hydra_plugins.optuna_journal_sweeper.sweeper", fromlist=["search_space"]).search_space(
        first._space_overrides([]))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / JOURNAL)))
    study = optuna.load_study(storage=storage, study_name="t")
    study.enqueue_trial({"x": 77})
    left = study.ask(space)  # RUNNING when the process died; x fixed, so the check does not hang on chance
    left_x = left.params["x"]
    sweeper = sweeper_in(tmp_path, n_trials=3, n_jobs=1)
    sweeper._sweep([])
    trials = journal_study(tmp_path).trials
    interrupted = [t for t in trials if t.user_attrs.get(TRIAL_INTERRUPTED)]
    assert len(interrupted) == 1 and interrupted[0].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # the first, then two more (not one)
    assert [job for job in sweeper.launcher.launched if f"x={left_x}" in job]  # its parameters ran again


def test_sweeper_records_a_failed_trials_error(tmp_path):
    import optuna
    from hydra_plugins.optuna_journal_sweeper.sweeper import _tell_failed

    from flavorfusion.sweep_files import TRIAL_ERROR

    study = optuna.create_study()
    trial = study.ask()
    _tell_failed(study, trial, "error: data.path: no file matches 'x'")
    assert study.trials[0].user_attrs[TRIAL_ERROR] == "error: data.path: no file matches 'x'"


# ---- serving security and limits -------------------------------------------------------------------------------


def request_with(headers: dict):
    return SimpleNamespace(headers={k.lower(): v for k, v in headers.items()})


def test_serving_key_is_required_when_configured_and_bearer_is_case_insensitive():
    from flavorfusion.serving.security import key_matches, presented_key

    assert key_matches(None, None)  # no key configured: open
    assert not key_matches("k-1", None) and not key_matches("k-1", "k-2") and key_matches("k-1", "k-1")
    for header in ("Bearer k-1", "bearer k-1", "BEARER k-1"):
        assert presented_key(request_with({"Authorization": header})) == "k-1"
    assert presented_key(request_with({"X-API-Key": "k-1"})) == "k-1"


@pytest.mark.parametrize("override", ["serve.api_key=x", "+serve.api_key=x", "++serve.api_key=x", "~serve.api_key=x",
                                      "+logger.wandb.api_key=x", "+x.password=x", "+x.token=x"])
def test_serving_any_secret_override_is_refused(override):
    from flavorfusion.errors import ConfigError
    from flavorfusion.runs import refuse_secrets

    with pytest.raises(ConfigError, match="a secret never goes on the command line"):
        refuse_secrets([override])


def test_serving_references_to_secrets_pass():
    from flavorfusion.runs import refuse_secrets

    refuse_secrets(["serve.api_key_env=FF_KEY", "serve.api_key_secret=projects/p/secrets/s/versions/1",
                    "+hydra.launcher.secrets.WANDB_API_KEY=wandb-api-key", "model.name_or_path=x"])


def test_serving_access_log_redacts_query_strings():
    from flavorfusion.serving.connections import RedactQueryStrings

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/?text=private|||||review&key=k", "1.1", 200), None)
    assert RedactQueryStrings().filter(record) and record.getMessage() == '1.2.3.4:5 - "GET /?<redacted> HTTP/1.1" 200'


def test_serving_header_bytes_counts_line_and_headers():
    from flavorfusion.serving.middleware import header_bytes

    scope = {"method": "GET", "raw_path": b"/healthz", "query_string": b"", "headers": [(b"host", b"x")]}
    small = header_bytes(scope)
    scope["headers"].append((b"x-big", b"a" * 1000))
    assert header_bytes(scope) - small == len(b"x-big") + 1000 + 4


# ---- the grouping decisions -------------------------------------------------------------------------------------


def decide(original, language, confidence, margin, **bounds):
    from flavorfusion.data.grouping import LanguageBounds, decide_language

    return decide_language(original, language, confidence, margin, LanguageBounds(**bounds))


def test_grouping_bounds_are_inclusive_at_their_edges():
    words = "una frase con varias palabras"
    assert decide(words, "es", 0.5, 0.2, min_confidence=0.5, min_margin=0.2).reason == "identified"
    assert decide(words, "es", 0.49, 0.2, min_confidence=0.5, min_margin=0.2).reason == "low_confidence"
    assert decide(words, "es", 0.9, 0.19, min_confidence=0.5, min_margin=0.2).reason == "small_margin"
    assert decide("tres palabras aqui", "es", 0.9, 0.9, min_words=3).reason == "identified"
    assert decide("dos palabras", "es", 0.9, 0.9, min_words=3).reason == "too_short"
    assert decide("我們喜歡這家店的菜", "zh", 0.9, 0.9, min_han_chars=8).language == "zh"  # 9 Han characters
    assert decide("我們喜歡這家店的", "zh", 0.9, 0.9, min_han_chars=8).language == "zh"  # exactly 8
    assert decide("我們喜歡這家店", "zh", 0.9, 0.9, min_han_chars=8).reason == "ambiguous_script"


def test_grouping_a_script_decides_only_when_lingua_agrees():
    assert decide("맛있어요", "ko", 0.1, 0.0).reason == "script"  # Hangul: Korean, however short
    assert decide("맛있어요", "ja", 0.9, 0.9).language is None  # Hangul but lingua said Japanese


def test_grouping_surname_probability_at_the_bound_is_labelled():
    from flavorfusion.data.grouping import SurnameGrouping

    grouping = SurnameGrouping.__new__(SurnameGrouping)
    grouping.min_probability = 0.7
    grouping.abstained = __import__("collections").Counter()
    grouping.lookup = lambda names: {"GARCIA": ("hispanic", 0.7, None), "SMITH": ("white", 0.69, None)}
    reviews = SimpleNamespace(reviewers=["Ana Garcia", "John Smith"])
    labels, confidences = grouping.assign(reviews)
    assert labels[0] != "unknown" and confidences[0] == 0.7
    assert labels[1] == "unknown" and grouping.abstained["below_min_probability"] == 1


# ---- the model's limits -----------------------------------------------------------------------------------------


def led_config(**kwargs):
    from transformers import LEDConfig

    return LEDConfig(**{"max_encoder_position_embeddings": 1000, "max_decoder_position_embeddings": 300,
                        "attention_window": [64, 128], "encoder_layers": 2, **kwargs})


def test_limits_come_from_the_models_positions_and_largest_window():
    from flavorfusion.models.loading import attention_window, source_limit, target_limit

    config = led_config()
    assert attention_window(config) == 128 and source_limit(config) == 896 and target_limit(config) == 300


def test_limits_training_refuses_one_token_more_than_the_model_takes():
    from flavorfusion.checks import check_model_limits
    from flavorfusion.errors import ConfigError

    config = led_config(max_encoder_position_embeddings=1024, attention_window=[128, 128])
    check_model_limits(OmegaConf.create({"max_source_length": 1024, "max_target_length": 300}), config)
    with pytest.raises(ConfigError, match="data.max_source_length=1025 is more than the model takes"):
        check_model_limits(OmegaConf.create({"max_source_length": 1025, "max_target_length": 300}), config)
    with pytest.raises(ConfigError, match="data.max_target_length=301"):
        check_model_limits(OmegaConf.create({"max_source_length": 512, "max_target_length": 301}), config)


def test_limits_generation_is_capped_to_the_decoder_with_min_new_tokens():
    from flavorfusion.config.generation import GenerationConf
    from flavorfusion.models.runtime import capped

    assert capped(GenerationConf(max_new_tokens=300, min_new_tokens=10), 300).max_new_tokens == 300
    over = capped(GenerationConf(max_new_tokens=500, min_new_tokens=400), 300)
    assert (over.max_new_tokens, over.min_new_tokens) == (300, 300)


def test_study_choice_tie_on_the_front_goes_to_the_smaller_export():
    from flavorfusion.studies import Study, choose

    a, b = run(0, 20.0, 2.0), run(1, 20.0, 1.0)
    a.pareto = b.pareto = True  # e.g. a front drawn against latency, where both are on it
    assert choose(Study("sweep", [a, b], [])).num == 1
    assert choose(Study("sweep", [b, a], [])).num == 1


# ---- cultural contrast --------------------------------------------------------------------------------------------


def test_contrast_one_reviewers_habit_is_not_a_term():
    from flavorfusion import contrast
    from flavorfusion.config.contrast import ContrastConf

    plain = ["The food was fine and the room was warm."] * 6
    habit = ["Spicy spicy spicy spicy spicy spicy spicy spicy spicy spicy spicy spicy, so spicy."] + plain
    found = contrast.restaurant_terms({"a": habit, "b": plain}, ContrastConf())
    assert "spicy" not in {t.term for t in found["a"].terms}  # twelve uses, but one review


def test_contrast_similarity_is_the_reviews_recall_not_the_summarys_precision():
    from flavorfusion import contrast

    summary = contrast.content_words("spicy chili heat portions price waiter")
    review = contrast.content_words("spicy chili")
    assert contrast.recall(summary, review) == 1.0  # every word of the review is in the summary
    assert contrast.recall(review, summary) == pytest.approx(2 / 6)
