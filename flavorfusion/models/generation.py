"""One generation path for LED / PRIMERA: summarize, evaluate, validation and the server all call
`generate_ids`.

Speed: on CUDA it decodes with Hugging Face's static KV cache, whose fixed shapes let `generate` compile each
decoding step (`torch.compile`, mode "reduce-overhead": CUDA graphs); the measured gain is in the README
("Performance anchors" of DESIGN.md, and `benchmarks/bench_generate.py`). The first call compiles; later calls with
the same shapes reuse the compiled step (new batch sizes or source lengths recompile). On CPU, and for beam search (which transformers
never compiles), the dynamic cache stays the default: uncompiled, the static cache is no faster.

Correctness: the static cache is wrong on LED as transformers ships it (checked up to 5.24).
`LEDDecoder.forward` builds its causal mask only when more than one token comes in
(`if input_shape[-1] > 1:` in `transformers/models/led/modeling_led.py`), so every one-token decoding step
attends to all `max_cache_len` slots of the static cache, the empty (zero) ones included: logits drift from the
first step and beams change. `led_static_cache(model)` swaps each decoder self-attention to
`StaticCacheLEDDecoderSelfAttention` for the duration of a call; when no mask comes in, it masks the slots
that are not yet written. The dynamic cache never holds empty slots and is left alone.

One graph per step: LED's decoder positions are `torch.arange(cache_length, cache_length + n)`, and with a
static cache `cache_length` is a tensor, so Dynamo breaks the compiled step there (`.item()`) into 5 graphs
with eager code between them, which splits the CUDA graph. `led_static_cache` also swaps the decoder's
position embedding to `TensorOffsetLEDPositionalEmbedding` (`arange(n) + cache_length`, same positions), which
leaves one graph and no break (checked on CPU with fullgraph=True in tests/test_generation.py).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from transformers.cache_utils import EncoderDecoderCache, StaticLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.led.modeling_led import (
    LEDDecoder,
    LEDDecoderAttention,
    LEDDecoderLayer,
    LEDLearnedPositionalEmbedding,
)

from flavorfusion.config.generation import CACHES, GenerationConf

MODEL_INPUTS = ("input_ids", "attention_mask", "global_attention_mask")


def resolve_cache(cache: str, device: torch.device | str, num_beams: int = 1) -> str:
    """"auto" -> "static" where transformers compiles the decoding step (CUDA, greedy or sampling), else
    "dynamic". Its beam search never compiles (`_beam_search` calls `self(...)`, transformers 5.24), and
    uncompiled the static cache only adds attention over empty slots and full-buffer beam reorders."""
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r} must be one of {CACHES}")
    if cache != "auto":
        return cache
    return "static" if torch.device(device).type == "cuda" and num_beams == 1 else "dynamic"


def _self_attention_layer(cache, layer_idx: int):
    """The cache layer that holds this decoder layer's self-attention keys, or None."""
    if isinstance(cache, EncoderDecoderCache):
        cache = cache.self_attention_cache
    layers = getattr(cache, "layers", None)
    if layers is None or layer_idx is None or layer_idx >= len(layers):
        return None
    return layers[layer_idx]


class StaticCacheLEDDecoderSelfAttention(LEDDecoderAttention):
    """`LEDDecoderAttention` (decoder self-attention) that masks the unwritten slots of a static cache.

    LEDDecoder passes no mask for one-token steps; with a static cache the keys are the whole preallocated
    buffer, so this builds the causal mask over it: query i (absolute position past + i) sees slots <= past + i.
    Everything else, including every step with a dynamic cache or with a mask from LEDDecoder, is HF's code.
    """

    def forward(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor | None = None,
                cache=None, attention_mask: torch.Tensor | None = None, output_attentions: bool = False):
        if attention_mask is None and key_value_states is None and cache is not None:
            layer = _self_attention_layer(cache, self.layer_idx)
            if isinstance(layer, StaticLayer):
                attention_mask = _static_causal_mask(layer, hidden_states)
        return super().forward(hidden_states, key_value_states=key_value_states, cache=cache,
                               attention_mask=attention_mask, output_attentions=output_attentions)


def _static_causal_mask(layer: StaticLayer, hidden_states: torch.Tensor) -> torch.Tensor:
    """(batch, 1, new tokens, max_cache_len) additive mask: 0 on written slots up to each query, min elsewhere.
    Read before the layer's update, so `past` counts the tokens already cached; tensor ops only (no .item()),
    so the compiled, CUDA-graphed step stays one graph."""
    batch_size, new_tokens, _ = hidden_states.shape
    device, dtype = hidden_states.device, hidden_states.dtype
    past = layer.cumulative_length if layer.is_initialized else 0
    query_positions = torch.arange(new_tokens, device=device) + past
    slots = torch.arange(layer.max_cache_len, device=device)
    visible = slots[None, :] <= query_positions[:, None]
    mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, torch.finfo(dtype).min)
    return mask[None, None].expand(batch_size, 1, new_tokens, layer.max_cache_len)


class TensorOffsetLEDPositionalEmbedding(LEDLearnedPositionalEmbedding):
    """LED's learned positions, offset by adding `cache_length` (an int, or the static cache's 0-d tensor)
    instead of passing it to `arange`: no data-dependent `.item()` under torch.compile."""

    def forward(self, input_ids_shape: torch.Size, cache_length: int | torch.Tensor = 0):
        seq_len = input_ids_shape[1]
        positions = torch.arange(seq_len, dtype=torch.long, device=self.weight.device) + cache_length
        return nn.Embedding.forward(self, positions)


# models whose decoder modules are swapped now -> how many calls hold the swap (nested or concurrent
# calls on one model share it; the last one out restores HF's class)
_swapped: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
_swap_lock = threading.Lock()


# HF class -> the class it becomes within `led_static_cache`
_STATIC_CACHE_CLASSES = {LEDDecoderAttention: StaticCacheLEDDecoderSelfAttention,
                         LEDLearnedPositionalEmbedding: TensorOffsetLEDPositionalEmbedding}


def _swappable_decoder_modules(model: nn.Module) -> list[tuple[nn.Module, type]]:
    """(module, its HF class) of every LED decoder self-attention and decoder position embedding; cross-attention
    and the encoder stay as they are."""
    found = []
    for module in model.modules():
        if isinstance(module, LEDDecoderLayer):
            found.append((module.self_attn, LEDDecoderAttention))
        elif isinstance(module, LEDDecoder):
            found.append((module.embed_positions, LEDLearnedPositionalEmbedding))
    return [(m, hf_class) for m, hf_class in found if type(m) in (hf_class, _STATIC_CACHE_CLASSES[hf_class])]


@contextlib.contextmanager
def led_static_cache(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, the LED decoder is correct and one graph per step with a static cache (see the module
    docstring); afterwards its modules are HF's classes again. Parameters and their names never change."""
    with _swap_lock:
        if _swapped.get(model, 0) == 0:
            modules = _swappable_decoder_modules(model)
            if not any(hf_class is LEDDecoderAttention for _, hf_class in modules):
                raise TypeError(f"{type(model).__name__} has no LED decoder self-attention (LEDDecoderAttention)")
            for module, hf_class in modules:
                module.__class__ = _STATIC_CACHE_CLASSES[hf_class]
        _swapped[model] = _swapped.get(model, 0) + 1
    try:
        yield model
    finally:
        with _swap_lock:
            _swapped[model] -= 1
            if _swapped[model] == 0:
                del _swapped[model]
                for module, hf_class in _swappable_decoder_modules(model):
                    module.__class__ = hf_class


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every submodule in eval mode (no dropout) within the block, each one's own mode restored after (Lightning
    may leave submodules in different modes)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_inputs(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The three LED inputs of a collated batch, on the model's device; all three are required."""
    missing = [key for key in MODEL_INPUTS if batch.get(key) is None]
    if missing:
        raise ValueError(f"the batch lacks {', '.join(missing)}: LED generation needs {', '.join(MODEL_INPUTS)}")
    device = next(model.parameters()).device
    return {key: batch[key].to(device, non_blocking=True) for key in MODEL_INPUTS}


def encode_each_alone(model: nn.Module, batch: dict, rows: list[dict]) -> BaseModelOutput:
    """The encoder's states of a batch, each row computed alone from `rows` (each row collated on its own: its own
    padding and global tokens), then padded with zeros to the batch's length. LED's attention kernels reduce over
    the padded length and the batch's global tokens, so a batched encoder pass gives a row numbers that depend on
    its batch-mates; alone, they are the row's own."""
    states = [model.get_encoder()(**model_inputs(model, row)).last_hidden_state[0] for row in rows]
    padded = states[0].new_zeros(len(states), batch["input_ids"].shape[1], states[0].shape[-1])
    for i, state in enumerate(states):
        padded[i, :state.shape[0]] = state
    return BaseModelOutput(last_hidden_state=padded)


def generate_outputs(model: nn.Module, batch: dict, generation: GenerationConf, rows: list[dict] | None = None,
                     **hf_kwargs):
    """What HF `generate` returns (ids, or a `GenerateOutput` with `return_dict_in_generate=True`), through the
    project's path: eval mode, no grad, all three LED inputs, the typed settings of the `generation` group, and on
    cache="static" (what "auto" picks for greedy decoding on CUDA) the static cache made correct by
    `led_static_cache`. With `generation.batch_invariant` and `rows` (each row of the batch collated alone), the
    encoder runs each row alone (`encode_each_alone`) and the decoding steps run batched. `hf_kwargs` go to
    `generate` beside them (e.g. return_dict_in_generate, output_scores, compile_config, disable_compile)."""
    if "cache_implementation" in hf_kwargs:
        raise ValueError("pass cache='dynamic' or cache='static' instead of cache_implementation")
    inputs = model_inputs(model, batch)
    kind = resolve_cache(generation.cache, inputs["input_ids"].device, generation.num_beams)
    fix = led_static_cache(model) if kind == "static" else contextlib.nullcontext()
    with eval_mode(model), fix, torch.no_grad():
        if generation.batch_invariant and rows is not None and len(rows) > 1:
            hf_kwargs["encoder_outputs"] = encode_each_alone(model, batch, rows)
        return model.generate(**inputs, max_new_tokens=generation.max_new_tokens,
                              min_new_tokens=generation.min_new_tokens, num_beams=generation.num_beams,
                              **({"cache_implementation": "static"} if kind == "static" else {}), **hf_kwargs)


def generate_ids(model: nn.Module, batch: dict, generation: GenerationConf, rows: list[dict] | None = None,
                 **hf_kwargs) -> torch.LongTensor:
    """Generated token ids (batch, decoder length) of a collated batch; see `generate_outputs`."""
    output = generate_outputs(model, batch, generation, rows, **hf_kwargs)
    return output if isinstance(output, torch.Tensor) else output.sequences


__all__ = ["StaticCacheLEDDecoderSelfAttention", "TensorOffsetLEDPositionalEmbedding", "encode_each_alone", "eval_mode",
           "generate_ids", "generate_outputs", "led_static_cache", "model_inputs", "resolve_cache"]
