"""Pruning callbacks: l1_unstructured (zeros), structured (smaller FFN layers), oneshot and gradual."""

import logging

import pytest
import torch

from flavorfusion.checks import validate_train
from flavorfusion.compression.measures import sparsity
from flavorfusion.compression.pruning import (
    DEFAULT_SUFFIXES,
    cumulative_sparsity,
    ffn_pairs,
    select_linear_modules,
    shrink_ffn,
    step_amount,
)
from flavorfusion.errors import ConfigError
from flavorfusion.models.tiny import build_tiny_led
from flavorfusion.training import train

from .conftest import FAST, compose_train


def test_default_suffixes_select_ffn_output_and_global_projections(tokenizer):
    names = [name for name, _ in select_linear_modules(build_tiny_led(tokenizer), DEFAULT_SUFFIXES)]
    assert "led.encoder.layers.0.fc1" in names and "led.decoder.layers.1.fc2" in names
    assert "led.encoder.layers.0.self_attn.longformer_self_attn.query_global" in names
    assert "led.encoder.layers.0.self_attn.output" in names and "led.decoder.layers.0.encoder_attn.out_proj" in names
    assert not any(name.endswith(("q_proj", "lm_head")) for name in names)


def test_a_suffix_matching_no_module_names_the_key(tokenizer):
    with pytest.raises(ConfigError, match=r"prune.suffixes: 'fc3' matches no Linear module"):
        select_linear_modules(build_tiny_led(tokenizer), ["fc1", "fc3"])


def test_gradual_schedule_reaches_the_amount_two_thirds_into_the_run():
    targets = [cumulative_sparsity(0.5, epoch, max_epochs=6) for epoch in range(6)]
    assert targets == sorted(targets) and 0 < targets[0] < targets[1] < 0.5
    assert targets[3] == targets[4] == targets[5] == pytest.approx(0.5)
    assert cumulative_sparsity(0.3, 0, max_epochs=1) == pytest.approx(0.3)
    # torch's pruning removes a share of what is left: 20% then 37.5% of the rest is 50% in all
    assert step_amount(0.2, 0.5) == pytest.approx(0.375)
    assert step_amount(0.5, 0.5) == 0.0


def test_shrinking_masked_ffn_neurons_keeps_the_outputs(tokenizer):
    model = build_tiny_led(tokenizer).eval()
    masks = {}
    with torch.no_grad():
        for name, fc1, fc2 in ffn_pairs(model):
            mask = torch.zeros(fc1.out_features, dtype=torch.bool)
            mask[::2] = True
            fc1.weight[~mask] = 0
            fc1.bias[~mask] = 0
            fc2.weight[:, ~mask] = 0
            masks[name] = mask
    ids = torch.randint(5, 200, (1, 64))
    before = model(input_ids=ids, decoder_input_ids=ids[:, :8]).logits
    shrink_ffn(model, masks)
    after = model(input_ids=ids, decoder_input_ids=ids[:, :8]).logits
    assert model.config.encoder_ffn_dim == model.config.decoder_ffn_dim == 64
    assert model.led.encoder.layers[0].fc1.out_features == 64
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("override", "key"), [
    ("prune.amount=1.0", "prune.amount"),
    ("prune.amount=-0.1", "prune.amount"),
    ("prune.schedule=sometimes", "prune.schedule"),
    ("prune.suffixes=[]", "prune.suffixes"),
])
def test_bad_prune_values_fail_before_training(override, key):
    cfg = compose_train(["experiment=quickstart", "prune=l1_unstructured", override])
    with pytest.raises(ConfigError, match=key):
        validate_train(cfg)


def test_l1_oneshot_prunes_the_loaded_model_without_training(tmp_path, caplog):
    cfg = compose_train([*FAST, "prune=l1_unstructured", "prune.amount=0.5", "prune.schedule=oneshot"], tmp_path)
    with caplog.at_level(logging.INFO, logger="flavorfusion.compression.pruning"):
        result = train(cfg)
    assert result.trainer.global_step == 0
    from transformers import AutoModelForSeq2SeqLM

    exported = AutoModelForSeq2SeqLM.from_pretrained(result.export_dir)
    assert sparsity(exported, DEFAULT_SUFFIXES) == pytest.approx(0.5, abs=0.01)
    assert sparsity(exported, ["q_proj"]) == 0.0  # untargeted layers keep every weight
    assert "pruned modules" in caplog.text and "led.encoder.layers.0.fc1" in caplog.text


def test_l1_gradual_exports_a_checkpoint_trained_at_the_target(tmp_path, caplog):
    # three epochs: sparsity ramps up in the first two; from the target on, the best-checkpoint race restarts
    cfg = compose_train([*FAST, "trainer.max_epochs=3", "prune=l1_unstructured", "prune.amount=0.3"], tmp_path)
    with caplog.at_level(logging.INFO, logger="flavorfusion.compression.pruning"):
        result = train(cfg)
    assert result.trainer.global_step > 0
    assert "earlier checkpoints no longer compete" in caplog.text
    assert "without further training" not in caplog.text  # the best checkpoint was already at the target
    assert sparsity(result.summarizer.model, DEFAULT_SUFFIXES) == pytest.approx(0.3, abs=0.01)


def test_unmatched_suffix_stops_before_any_step(tmp_path):
    cfg = compose_train([*FAST, "prune=l1_unstructured", "prune.suffixes=[fc1,not_a_layer]"], tmp_path)
    with pytest.raises(ConfigError, match="prune.suffixes: 'not_a_layer'"):
        train(cfg)


def test_structured_export_has_half_the_ffn_neurons_and_reloads(tmp_path, tokenizer):
    cfg = compose_train([*FAST, "prune=structured", "prune.amount=0.5"], tmp_path)
    result = train(cfg)
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(result.export_dir).eval()
    ffn = cfg.model.architecture.ffn_dim
    assert model.config.encoder_ffn_dim == model.config.decoder_ffn_dim == ffn // 2
    assert all(fc1.out_features == ffn // 2 and fc2.in_features == ffn // 2 for _, fc1, fc2 in ffn_pairs(model))
    # the reloaded export computes what the pruned model of the run computes: same logits, same tokens
    ids = torch.randint(5, 200, (1, 64))
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": 6, "min_new_tokens": 6}
    trained = result.summarizer.model.eval()
    out = model.generate(**kwargs)
    assert out.shape[1] == 7 and torch.equal(out, trained.generate(**kwargs))
    labels = out[:, 1:].contiguous()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids, labels=labels).logits, trained(input_ids=ids, labels=labels).logits,
                              atol=1e-5)


def test_pruned_and_quantized_exports_upload_as_wandb_artifacts(tmp_path, monkeypatch):
    import flavorfusion.tracking

    uploaded = []
    monkeypatch.setattr(flavorfusion.tracking, "log_model_artifact",
                        lambda logger, directory, name, artifact_type="model", metadata=None:
                        uploaded.append((artifact_type, directory)))
    cfg = compose_train([*FAST, "logger=wandb", "prune=structured", "prune.schedule=oneshot",
                         "quantize=int8_dynamic"], tmp_path)
    result = train(cfg)
    try:
        assert uploaded == [("pruned_model", result.export_dir),
                            ("quantized_model", result.objects["quantized_export_dir"])]
    finally:
        result.trainer.logger.experiment.finish()
