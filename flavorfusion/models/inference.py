"""A loaded export summarizing review groups in PRIMERA's input layout, through the one generation path.

`evaluate`, `summarize` and the server all use `GroupSummarizer`, and place a loaded model with
`place_for_inference`.
"""

import logging
import threading

import torch

from flavorfusion.data.encoding import DOC_SEP, ExampleEncoder, PrimeraCollator
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import ConfigError
from flavorfusion.models.generation import generate_ids
from flavorfusion.models.loading import attention_window, source_limit, target_limit

log = logging.getLogger(__name__)


class GroupEncoder:
    """Encodes groups as validation does (the k longest reviews), within what the model takes. Needs only the
    tokenizer and the model's config, so `summarize engine=beam` encodes (and batches by length) before a model
    loads. `data` is a data config (`conf/data/*.yaml`): lengths, selection and padding."""

    def __init__(self, tokenizer, config, data):
        self.tokenizer = tokenizer
        self.max_source_length = min(data.max_source_length, source_limit(config))
        if self.max_source_length < data.max_source_length:
            # PRIMERA's encoding gives every review an equal share of the budget, so truncation stays fair
            log.info("data.max_source_length=%d is more than the model takes: inputs are truncated to its %d "
                     "encoder positions", data.max_source_length, self.max_source_length)
        self.encoder = ExampleEncoder(tokenizer, ReviewSelection.from_config(data), self.max_source_length,
                                      data.max_target_length)
        self.collator = PrimeraCollator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(DOC_SEP),
                                        pad_to_multiple_of=data.pad_to_multiple_of or attention_window(config))
        # a fast tokenizer keeps its truncation length in shared state, set by each call: two threads encoding at
        # once (the server encodes each request in a thread) could truncate one group with the other's budget
        self._lock = threading.Lock()

    def encode(self, groups: list[ReviewGroup]) -> list[dict]:
        with self._lock:
            return [{"input_ids": self.encoder.validation_example(g)["input_ids"]} for g in groups]


class GroupSummarizer:
    """Summarizes encoded groups (`GroupEncoder`) through the project's generation path; decodes the summaries."""

    def __init__(self, model, tokenizer, data):
        self.model, self.tokenizer = model, tokenizer
        self.group_encoder = GroupEncoder(tokenizer, model.config, data)
        self.max_source_length = self.group_encoder.max_source_length
        self.collator = self.group_encoder.collator
        self.max_new_tokens = target_limit(model.config)
        self._capped_logged = False

    def encode(self, groups: list[ReviewGroup]) -> list[dict]:
        return self.group_encoder.encode(groups)

    def generate(self, features: list[dict], **generation) -> list[str]:
        if generation.get("max_new_tokens", 0) > self.max_new_tokens:
            if not self._capped_logged:
                log.info("generation.max_new_tokens=%d is more than the model's %d decoder positions: capped",
                         generation["max_new_tokens"], self.max_new_tokens)
                self._capped_logged = True
            generation = {**generation, "max_new_tokens": self.max_new_tokens,
                          "min_new_tokens": min(generation.get("min_new_tokens", 0), self.max_new_tokens)}
        ids = generate_ids(self.model, self.collator(features), **generation)  # moves inputs to the model's device
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def is_quantized(model: torch.nn.Module) -> bool:
    """A quantized export holds integer weights (int8, packed int4): it runs as loaded, on the CPU."""
    return any(not t.is_floating_point() for t in model.state_dict().values())


def place_for_inference(model, device: str, dtype: str):
    """The model in eval mode on its device and dtype -> (model, torch device, torch dtype, quantized).

    `auto`: the GPU in bf16 when there is one, else the CPU in fp32; a quantized export stays on the CPU as loaded.
    """
    quantized = is_quantized(model)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not quantized else "cpu"
    if quantized and device != "cpu":
        raise ConfigError(f"device={device}: quantized exports run on the CPU; set device=cpu or use the fp export")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        torch_device, torch_dtype = torch.device(device), getattr(torch, dtype)
    except (RuntimeError, AttributeError):
        raise ConfigError(f"device={device} dtype={dtype}: not a torch device and dtype") from None
    if not quantized:
        model = model.to(device=torch_device, dtype=torch_dtype)
    return model.eval(), torch_device, torch_dtype, quantized


def inference_summarizer(model, tokenizer, data, *, device: str = "auto", dtype: str = "auto",
                         attention: str = "hf"):
    """A loaded model placed for inference (`place_for_inference`), with the encoder attention asked for
    -> (GroupSummarizer, torch device, torch dtype, quantized). Summarize and serve run their models through it."""
    model, torch_device, torch_dtype, quantized = place_for_inference(model, device, dtype)
    if attention != "hf":
        from flavorfusion.models.attention import set_encoder_attention

        set_encoder_attention(model, attention)
    return GroupSummarizer(model, tokenizer, data), torch_device, torch_dtype, quantized
