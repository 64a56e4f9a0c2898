"""FlexLEDEncoderSelfAttention against Hugging Face's LEDEncoderSelfAttention: same outputs, gradients,
checkpoints; masks built once per forward."""

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM, LEDConfig, LEDForConditionalGeneration, LEDModel
from transformers.models.led.modeling_led import LEDEncoderSelfAttention, _prepare_4d_attention_mask_inverted

from flavorfusion.errors import ConfigError
from flavorfusion.models.attention import FlexLEDEncoderSelfAttention, set_encoder_attention

# eager FlexAttention (the CPU path when forced) warns that it is unfused; expected here
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

ATOL = 1e-4
D_MODEL = 32
PAD = 1


def tiny_config(attention_window: int = 8, layers: int = 2, attention_dropout: float = 0.0) -> LEDConfig:
    return LEDConfig(vocab_size=100, d_model=D_MODEL, encoder_layers=layers, decoder_layers=layers,
                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     attention_window=[attention_window] * layers, max_encoder_position_embeddings=64,
                     max_decoder_position_embeddings=32, pad_token_id=PAD, bos_token_id=0, eos_token_id=2,
                     decoder_start_token_id=2, dropout=0.0, attention_dropout=attention_dropout,
                     activation_dropout=0.0)


def encoder_float_mask(lengths: list[int], global_positions: list[list[int]], seq_len: int) -> torch.Tensor:
    """The (B, L) float mask LEDEncoder.forward hands its layers: < 0 padding, 0 local, > 0 global."""
    attention_mask = (torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]).long()
    global_mask = torch.zeros_like(attention_mask)
    for row, positions in enumerate(global_positions):
        global_mask[row, positions] = 1
    return _prepare_4d_attention_mask_inverted(attention_mask * (global_mask + 1), torch.float32)[:, 0, 0, :]


def layer_inputs(attention_mask: torch.Tensor) -> dict:
    is_index_global_attn = attention_mask > 0
    return {"attention_mask": attention_mask, "is_index_masked": attention_mask < 0,
            "is_index_global_attn": is_index_global_attn,
            "is_global_attn": bool(is_index_global_attn.any())}


def hf_and_flex(config: LEDConfig, kernel: str) -> tuple[LEDEncoderSelfAttention, FlexLEDEncoderSelfAttention]:
    torch.manual_seed(0)
    hf = LEDEncoderSelfAttention(config, layer_id=0).eval()
    flex = set_encoder_attention(copy.deepcopy(hf), "flex", kernel=kernel)
    return hf, flex


# (attention_window, sequence length, row lengths, global positions per row)
CASES = {
    # globals at 0, at the window edge of 0 (4) and just past it (5), mid-sequence and the last token
    "padding_and_globals": (8, 24, [24, 17, 9], [[0, 4, 5, 12, 23], [0, 8, 16], [0]]),
    "no_globals": (8, 16, [16, 11], [[], []]),
    # a one-token row, a row whose tokens are all global, adjacent globals near the end
    "wide_window_edge_rows": (16, 32, [32, 1, 3, 30], [[0, 8, 9, 31], [0], [0, 1, 2], [0, 27, 28, 29]]),
}


def run_layer(layer: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    (output,) = layer(hidden_states, **layer_inputs(attention_mask))
    return output


@pytest.mark.parametrize("kernel", ["flex", "sdpa"])
@pytest.mark.parametrize("case", CASES)
def test_layer_matches_hf(case: str, kernel: str):
    window, seq_len, lengths, global_positions = CASES[case]
    hf, flex = hf_and_flex(tiny_config(window), kernel)
    attention_mask = encoder_float_mask(lengths, global_positions, seq_len)
    hidden_states = torch.randn(len(lengths), seq_len, D_MODEL)
    with torch.no_grad():  # FlexAttention has no backward on CPU
        expected = run_layer(hf, hidden_states, attention_mask)
        actual = run_layer(flex, hidden_states, attention_mask)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)
    # padding rows are zeros in HF; a mask that ignored padding queries would leave them non-zero
    padding = attention_mask < 0
    assert padding.any() and expected[padding].abs().max() == 0 and actual[padding].abs().max() == 0


def test_layer_gradients_match_hf():
    window, seq_len, lengths, global_positions = CASES["padding_and_globals"]
    hf, flex = hf_and_flex(tiny_config(window), "sdpa")
    attention_mask = encoder_float_mask(lengths, global_positions, seq_len)
    hidden_states = torch.randn(len(lengths), seq_len, D_MODEL)
    loss_weights = torch.randn(len(lengths), seq_len, D_MODEL) * (attention_mask >= 0)[:, :, None]
    grads = []
    for layer in (hf, flex):
        inputs = hidden_states.clone().requires_grad_()
        (run_layer(layer, inputs, attention_mask) * loss_weights).sum().backward()
        grads.append({"hidden_states": inputs.grad, **{n: p.grad for n, p in layer.named_parameters()}})
    hf_grads, flex_grads = grads
    assert hf_grads.keys() == flex_grads.keys()
    for name, expected in hf_grads.items():
        assert expected.abs().max() > 0, name  # every projection is exercised, including the global ones
        torch.testing.assert_close(flex_grads[name], expected, atol=ATOL, rtol=0, msg=name)


def model_inputs() -> dict:
    torch.manual_seed(1)
    batch, seq_len = 3, 21  # not a multiple of the window: LEDEncoder pads it to 24
    lengths = torch.tensor([21, 14, 6])
    attention_mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(3, 100, (batch, seq_len)).masked_fill(attention_mask == 0, PAD)
    global_attention_mask = torch.zeros_like(attention_mask)
    global_attention_mask[:, 0] = 1
    global_attention_mask[0, [7, 20]] = 1
    global_attention_mask[1, 13] = 1
    labels = torch.randint(3, 100, (batch, 7))
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "global_attention_mask": global_attention_mask, "labels": labels}


def tiny_model(config: LEDConfig | None = None) -> LEDForConditionalGeneration:
    torch.manual_seed(0)
    return LEDForConditionalGeneration(config or tiny_config()).eval()


def encoder_attention_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, LEDEncoderSelfAttention)}


@pytest.mark.parametrize("kernel", ["flex", "sdpa"])
def test_model_matches_hf_and_swaps_back(kernel: str):
    model, inputs = tiny_model(), model_inputs()
    with torch.no_grad():
        expected = model(**inputs)
        set_encoder_attention(model, "flex", kernel=kernel)
        assert encoder_attention_types(model) == {FlexLEDEncoderSelfAttention}
        actual = model(**inputs)
        set_encoder_attention(model, "hf")
        assert encoder_attention_types(model) == {LEDEncoderSelfAttention}
        assert not any(hasattr(m, "mask_cache") for m in model.modules())
        restored = model(**inputs)
    torch.testing.assert_close(actual.loss, expected.loss, atol=ATOL, rtol=0)
    torch.testing.assert_close(actual.logits, expected.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(restored.logits, expected.logits, atol=0, rtol=0)


def test_output_attentions_falls_back_to_hf():
    model, inputs = tiny_model(), model_inputs()
    with torch.no_grad():
        expected = model(**inputs, output_attentions=True)
        actual = set_encoder_attention(model, "flex", kernel="sdpa")(**inputs, output_attentions=True)
    assert len(actual.encoder_attentions) == 2 and len(actual.encoder_global_attentions) == 2
    for name in ("encoder_attentions", "encoder_global_attentions"):
        for actual_probs, expected_probs in zip(getattr(actual, name), getattr(expected, name), strict=True):
            torch.testing.assert_close(actual_probs, expected_probs, atol=0, rtol=0)
    assert mask_caches(model)[0].builds == 0


def test_led_model_without_lm_head():
    torch.manual_seed(0)
    model = LEDModel(tiny_config()).eval()
    inputs = model_inputs()
    inputs["decoder_input_ids"] = inputs.pop("labels")
    with torch.no_grad():
        expected = model(**inputs).encoder_last_hidden_state
        actual = set_encoder_attention(model, "flex")(**inputs).encoder_last_hidden_state
    assert encoder_attention_types(model) == {FlexLEDEncoderSelfAttention}
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_save_after_swap_is_a_stock_led(tmp_path):
    model = tiny_model()
    keys, config = set(model.state_dict()), model.config.to_dict()
    set_encoder_attention(model, "flex")
    assert set(model.state_dict()) == keys
    assert model.config.to_dict() == config
    model.save_pretrained(tmp_path)

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is LEDForConditionalGeneration
    assert encoder_attention_types(loaded) == {LEDEncoderSelfAttention}
    assert set(loaded.state_dict()) == keys
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=0, rtol=0, msg=name)


def test_swapped_model_copies_and_pickles():
    model = set_encoder_attention(tiny_model(), "flex")
    with torch.no_grad():
        model(**model_inputs())  # the cache now holds a weak reference
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert encoder_attention_types(clone) == {FlexLEDEncoderSelfAttention}
        with torch.no_grad():
            torch.testing.assert_close(clone(**model_inputs()).logits, model(**model_inputs()).logits)


def mask_caches(model: nn.Module) -> list:
    return [m.mask_cache for m in model.modules() if isinstance(m, FlexLEDEncoderSelfAttention)]


@pytest.mark.parametrize("checkpointing", [None, "non-reentrant", "reentrant"])
def test_masks_built_once_per_forward(checkpointing: str | None):
    model = set_encoder_attention(tiny_model(), "flex", kernel="sdpa")
    caches = mask_caches(model)
    assert len(caches) == 2 and caches[0] is caches[1]  # one cache shared by both layers
    attention_calls = []
    for module in model.modules():
        if isinstance(module, FlexLEDEncoderSelfAttention):
            module.register_forward_hook(lambda *_: attention_calls.append(1))
    if checkpointing:
        model.train()
        model.activation_checkpointing_enable({"use_reentrant": checkpointing == "reentrant"})
    model(**model_inputs()).loss.backward()  # a checkpointed layer reruns its forward during backward
    assert len(attention_calls) == (4 if checkpointing else 2)
    assert caches[0].builds == 1
    model(**model_inputs()).loss.backward()
    assert caches[0].builds == 2


def test_dropout_on_sdpa_and_warning_on_flex():
    window, seq_len, lengths, global_positions = CASES["padding_and_globals"]
    config = tiny_config(window, attention_dropout=0.5)
    attention_mask = encoder_float_mask(lengths, global_positions, seq_len)
    hidden_states = torch.randn(len(lengths), seq_len, D_MODEL)

    _, sdpa = hf_and_flex(config, "sdpa")
    evaluated = run_layer(sdpa, hidden_states, attention_mask)
    sdpa.train()
    dropped = [run_layer(sdpa, hidden_states, attention_mask) for _ in range(2)]
    is_global = attention_mask > 0
    for rows in (attention_mask == 0, is_global):  # local rows (one SDPA call) and global rows (another)
        assert (dropped[0] - evaluated)[rows].abs().max() > 0.1
        assert (dropped[0] - dropped[1])[rows].abs().max() > 0.1

    _, flex = hf_and_flex(config, "flex")
    flex.train()
    with torch.no_grad(), pytest.warns(UserWarning, match="attention_dropout=0.5 is not applied"):
        run_layer(flex, hidden_states, attention_mask)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_layer(flex, hidden_states, attention_mask)
    assert not [w for w in caught if "attention_dropout" in str(w.message)]  # once per model


@pytest.mark.parametrize("kind", ["flash", "HF", ""])
def test_bad_kind_names_the_key(kind: str):
    with pytest.raises(ConfigError, match=f"model.attention={kind} must be hf or flex"):
        set_encoder_attention(tiny_model(), kind)


def test_model_without_led_encoder_names_the_key():
    with pytest.raises(ConfigError, match="model.attention=flex"):
        set_encoder_attention(nn.Linear(4, 4), "flex")
