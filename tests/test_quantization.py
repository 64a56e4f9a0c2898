"""Quantized exports: int8_dynamic (torchao weights, int8 matmul), woq_int8/woq_int4 (neural-compressor
RTN); safetensors only, reload from disk and generate."""

import importlib.util
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from flavorfusion.compression.quantization import (
    Int8DynamicLinear,
    check_backend,
    export_quantized,
    is_quantized_export,
    load_quantized,
)
from flavorfusion.errors import ConfigError
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led


@pytest.fixture(scope="module")
def fp_export(tmp_path_factory, tokenizer):
    directory = str(tmp_path_factory.mktemp("fp") / "model")
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, directory)


def _generate(model, n=8):
    torch.manual_seed(0)
    ids = torch.randint(5, 300, (1, 64))
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n)


def test_int8_dynamic_linear_is_close_to_fp32():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    quantized = Int8DynamicLinear.from_linear(linear)
    assert quantized.qweight.dtype == torch.int8 and quantized.scale.shape == (32,)
    x = torch.randn(3, 5, 64)
    expected = linear(x)
    assert (quantized(x) - expected).abs().max() < 0.02 * expected.abs().max()
    assert torch.equal(quantized(torch.zeros(1, 64)), linear.bias.detach()[None])  # padding rows stay finite
    rows = x.reshape(-1, 64)
    x_scale = rows.abs().amax(dim=-1, keepdim=True) / 127
    x_int8 = torch.div(rows, x_scale).round_().to(torch.int8)
    # without oneDNN (and for single rows): torch._int_mm, the same numbers
    assert torch.equal(quantized._product_int_mm(x_int8), quantized._product_onednn(x_int8))
    assert torch.equal(quantized._product_int_mm(x_int8[:1]), quantized._product_onednn(x_int8[:1]))
    assert torch.equal(quantized(x[0, :1]), quantized(x)[0, :1])  # a row alone and among others


@pytest.mark.parametrize("method", ["int8_dynamic", "woq_int8", "woq_int4"])
def test_quantized_export_is_safetensors_and_reloads(fp_export, tmp_path, method):
    from transformers import AutoModelForSeq2SeqLM

    exclude = [] if method == "int8_dynamic" else ["lm_head"]  # the conf/quantize defaults
    quantize = OmegaConf.create({"method": method, "exclude": exclude, "export_dir": str(tmp_path / method)})
    directory = export_quantized(quantize, fp_export)
    files = os.listdir(directory)
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    assert is_quantized_export(directory) and not is_quantized_export(fp_export)
    with open(os.path.join(directory, "config.json")) as f:
        assert json.load(f)["quantization_config"]["method"] == method
    assert os.path.getsize(os.path.join(directory, "model.safetensors")) < os.path.getsize(
        os.path.join(fp_export, "model.safetensors"))
    model, tokenizer = load_quantized(directory)
    assert model.led.encoder.embed_tokens.weight is model.led.shared.weight
    assert tokenizer.convert_tokens_to_ids("<doc-sep>") != tokenizer.unk_token_id
    generated = _generate(model)
    assert generated.shape[1] == 9  # decoder start + exactly 8 new tokens
    fp_model = AutoModelForSeq2SeqLM.from_pretrained(fp_export).eval()
    fp_generated = _generate(fp_model)
    if method != "woq_int4":  # 8-bit keeps the greedy tokens of this tiny model
        assert torch.equal(generated, fp_generated)
    # teacher-forced on the fp model's tokens, the quantized logits are close to the fp ones but not equal (the
    # weights were quantized); measured relative errors: int8_dynamic 0.013, woq_int8 0.0003, woq_int4 0.0047
    torch.manual_seed(0)
    ids = torch.randint(5, 300, (1, 64))
    labels = fp_generated[:, 1:].contiguous()
    with torch.no_grad():
        quantized_logits = model(input_ids=ids, labels=labels).logits
        fp_logits = fp_model(input_ids=ids, labels=labels).logits
    error = float((quantized_logits - fp_logits).norm() / fp_logits.norm())
    assert 0 < error < 0.05, error
    assert (quantized_logits.argmax(-1) == fp_logits.argmax(-1)).float().mean() >= 0.9


def test_missing_backend_names_the_key(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "neural_compressor" else real(name, *a))
    with pytest.raises(ConfigError, match=r"quantize.method=woq_int4 needs the `neural_compressor` package"):
        check_backend("woq_int4")
    check_backend("none")
