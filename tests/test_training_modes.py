"""The paths a user takes with a pretrained model: an export loaded by path trains in training mode
(dropout, gradient checkpointing), and runs without a logger, validation or checkpoint callback finish
and export."""

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from transformers.modeling_layers import GradientCheckpointingLayer

from flavorfusion.errors import ConfigError, DataError
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led
from flavorfusion.training import train

from .conftest import FAST, compose_train, run_module


class ModeProbe(Callback):
    """Records, per phase, how many modules of the HF model are in training mode, whether two forward
    passes of the same batch differ (dropout), and how many checkpointed layer calls were made."""

    seen: dict = {}

    def on_fit_start(self, trainer, pl_module):
        ModeProbe.seen = {"train": [], "val": [], "dropout_train": [], "dropout_val": [], "checkpointed": 0,
                          "modules": sum(1 for _ in pl_module.model.modules())}
        for module in pl_module.model.modules():
            if isinstance(module, GradientCheckpointingLayer) and hasattr(module, "_gradient_checkpointing_func"):
                module._gradient_checkpointing_func = self._counting(module._gradient_checkpointing_func)

    @staticmethod
    def _counting(checkpoint):
        def counted(*args, **kwargs):
            ModeProbe.seen["checkpointed"] += 1
            return checkpoint(*args, **kwargs)

        return counted

    def _record(self, pl_module, batch, phase):
        ModeProbe.seen[phase].append(sum(m.training for m in pl_module.model.modules()))
        with torch.no_grad():
            ModeProbe.seen[f"dropout_{phase}"].append(bool(pl_module(batch) != pl_module(batch)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record(pl_module, batch, "train")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch["labels"].shape[1] > 0:
            self._record(pl_module, batch, "val")


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer):
    """A tiny LED saved as a user's export: loading it returns a model in eval mode, as PRIMERA's does."""
    directory = str(tmp_path_factory.mktemp("export") / "model")
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, directory)


PRETRAINED = [*FAST, "model=primera", "+callbacks.mode_probe._target_=tests.test_training_modes.ModeProbe",
              "generation.max_new_tokens=8", "generation.min_new_tokens=2", "model.optimizer.lr=1e-3"]


@pytest.mark.parametrize("source", ["path", "wandb_artifact"])
def test_export_trains_in_training_mode_and_validates_in_eval_mode(export, tmp_path, monkeypatch, source):
    if source == "path":
        overrides = [f"model.name_or_path={export}"]
    else:
        import wandb

        class FakeArtifact:
            def download(self, root):
                return export

        monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"artifact": lambda s, r, type: FakeArtifact()})())
        overrides = ["model.name_or_path=wandb:me/FlavorFusion/model-x:v0"]
    result = train(compose_train([*PRETRAINED, *overrides], tmp_path))
    seen = ModeProbe.seen
    assert seen["train"] and all(n == seen["modules"] for n in seen["train"])  # every module, every step
    assert seen["val"] and all(n == 0 for n in seen["val"])
    assert all(seen["dropout_train"]) and not any(seen["dropout_val"])  # dropout on in training only
    assert seen["checkpointed"] == 0  # primera's default: no activation checkpointing
    assert result.metrics["best_checkpoint"]


def test_gradient_checkpointing_is_used(export, tmp_path):
    result = train(compose_train([*PRETRAINED, f"model.name_or_path={export}", "model.gradient_checkpointing=true"],
                                 tmp_path))
    config = result.summarizer.model.config
    layers = config.encoder_layers + config.decoder_layers
    steps = result.trainer.global_step
    assert steps == 3
    # each layer is checkpointed once per training forward (non-reentrant: the recompute is not a new call),
    # and never in validation
    assert ModeProbe.seen["checkpointed"] == layers * steps


def test_dropout_makes_two_training_passes_differ(export):
    from flavorfusion.data.encoding import PrimeraCollator, encode_documents, encode_target
    from flavorfusion.models.summarizer import Summarizer

    summarizer = Summarizer.from_pretrained(export, optimizer=torch.optim.AdamW)
    assert not summarizer.model.training  # as transformers returns it
    tok = summarizer.tokenizer
    collate = PrimeraCollator(tok.pad_token_id, tok.convert_tokens_to_ids("<doc-sep>"), 32)
    batch = collate([{"input_ids": encode_documents(tok, ["great tacos", "slow service"], 128),
                      "labels": encode_target(tok, "tacos are great", 32)}])
    summarizer.on_train_epoch_start()
    assert all(m.training for m in summarizer.model.modules())
    assert summarizer(batch) != summarizer(batch)
    summarizer.generate(batch, max_new_tokens=2)
    assert all(m.training for m in summarizer.model.modules())  # generation restores the mode it found
    summarizer.eval()
    assert summarizer(batch) == summarizer(batch)


@pytest.mark.parametrize("overrides", [
    ["logger=none"],
    ["trainer.limit_val_batches=0", "callbacks.model_checkpoint=null"],
    ["trainer.limit_val_batches=0"],
    ["callbacks.model_checkpoint=null", "logger=none"],
], ids=["no-logger", "no-validation-no-checkpoint", "no-validation", "no-checkpoint-callback"])
def test_runs_without_logger_validation_or_checkpoint_finish_and_export(export, tmp_path, overrides):
    result = train(compose_train([*FAST, "model=primera", f"model.name_or_path={export}",
                                  "generation.max_new_tokens=4", *overrides], tmp_path))
    assert (tmp_path / "model" / "model.safetensors").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    scored = "logger=none" in overrides and len(overrides) == 1
    assert (metrics["best_checkpoint"] is not None) == scored  # says whether a best checkpoint exists
    assert ("best/rougeL" in metrics) == scored
    # the export holds the weights the run ended with (the best ones when a best was scored)
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "model" / "model.safetensors")
    name = "led.encoder.layers.0.fc1.weight"
    assert torch.equal(exported[name], result.summarizer.model.state_dict()[name])


def test_quickstart_without_logger_leaves_out_lr_monitor(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="flavorfusion.training"):
        result = train(compose_train([*FAST, "logger=none"], tmp_path))
    assert "no logger: leaving out LearningRateMonitor" in caplog.text
    assert not any(type(cb).__name__ == "LearningRateMonitor" for cb in result.trainer.callbacks)


def test_wrong_data_path_fails_before_the_model_loads(tmp_path, monkeypatch):
    from flavorfusion.models import loading

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the data path was checked")

    monkeypatch.setattr(loading, "load_pretrained", must_not_load)
    cfg = compose_train(["model=primera", f"data.path={tmp_path}/lsars-*.csv"], tmp_path)
    with pytest.raises(DataError, match=rf"^data.path: no file matches '{tmp_path}/lsars-\*.csv'$"):
        train(cfg)


def test_missing_data_path_names_the_key(tmp_path):
    cfg = compose_train(["model=primera"], tmp_path)
    with pytest.raises(ConfigError, match=r"^data.path: missing value"):
        train(cfg)


def test_quantized_export_is_refused_for_training(export, tmp_path):
    from flavorfusion.compression.quantization import export_quantized

    quantized = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                                   "export_dir": str(tmp_path / "int8")}), export)
    with pytest.raises(ConfigError, match=r"^model.name_or_path=.*int8 is a quantized export"):
        train(compose_train([*FAST, "model=primera", f"model.name_or_path={quantized}"], tmp_path / "run"))
    # a W&B artifact is only a directory once downloaded: the loader refuses it there, before the weights load
    from flavorfusion.models.loading import load_pretrained

    with pytest.raises(ConfigError, match=r"^model.name_or_path=.*int8 is a quantized export"):
        load_pretrained(quantized, for_training=True)


@pytest.mark.slow
def test_cli_quickstart_without_logger_exits_0_and_exports(tmp_path):
    result = run_module("flavorfusion.train", "experiment=quickstart", "logger=none", "trainer.max_epochs=2",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"]


def test_flex_attention_run_exports_a_stock_led(export, tmp_path):
    from transformers import AutoModelForSeq2SeqLM
    from transformers.models.led.modeling_led import LEDEncoderSelfAttention

    from flavorfusion.models.attention import FlexLEDEncoderSelfAttention

    result = train(compose_train([*PRETRAINED, f"model.name_or_path={export}", "model.attention=flex"], tmp_path))
    assert ModeProbe.seen["train"] and all(ModeProbe.seen["dropout_train"])
    trained = result.summarizer.model
    assert any(isinstance(m, FlexLEDEncoderSelfAttention) for m in trained.modules())
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model")
    assert {type(m) for m in reloaded.modules()} >= {LEDEncoderSelfAttention}
    assert not any(isinstance(m, FlexLEDEncoderSelfAttention) for m in reloaded.modules())
    assert reloaded.state_dict().keys() == trained.state_dict().keys()


def test_compiled_layers_keep_parameter_names_and_outputs(export):
    from flavorfusion.models.loading import load_pretrained
    from flavorfusion.models.summarizer import compile_layers

    model, tokenizer = load_pretrained(export)
    ids = torch.randint(5, 300, (2, 64))
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :8].contiguous()}
    expected = model(**kwargs).loss
    keys = model.state_dict().keys()
    assert compile_layers(model, backend="eager") == 4
    assert model.state_dict().keys() == keys
    assert torch.allclose(model(**kwargs).loss, expected, atol=1e-6)


def test_fused_adamw_with_clipping_trains_under_bf16_mixed(tmp_path):
    # Lightning's mixed-precision plugin refuses to clip for a fused optimizer; without a scaler we clip ourselves
    result = train(compose_train([*FAST, "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1e-3"], tmp_path))
    optimizer = result.trainer.optimizers[0]
    assert optimizer.defaults["fused"] is True
    assert result.trainer.global_step == 3


def test_fused_adamw_with_fp16_clipping_names_the_key(tmp_path):
    from flavorfusion.checks import validate_train

    with pytest.raises(ConfigError, match=r"^model.optimizer.fused=true cannot be combined with gradient clipping"):
        validate_train(compose_train(["experiment=quickstart", "trainer.precision=16-mixed"], tmp_path))
