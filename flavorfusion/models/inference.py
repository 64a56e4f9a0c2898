"""A loaded export summarizing review groups in PRIMERA's input layout, through the one generation path.

`evaluate`, `summarize` and the server all use `GroupSummarizer`, and place a loaded model with
`place_for_inference`.
"""

import torch

from flavorfusion.data.encoding import DOC_SEP, ExampleEncoder, PrimeraCollator
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import ConfigError
from flavorfusion.models.generation import generate_ids
from flavorfusion.models.loading import attention_window


def source_length_limit(config, max_source_length: int | None = None) -> int:
    """The longest input the model takes: its encoder positions rounded down to a multiple of the attention
    window (LED pads inputs up to one), and at most `max_source_length` when given. Longer inputs are truncated
    to it instead of failing inside the model."""
    window = attention_window(config)
    limit = config.max_encoder_position_embeddings // window * window
    return min(limit, max_source_length) if max_source_length else limit


class GroupSummarizer:
    """Encodes groups as validation does (the k longest reviews) and decodes generated summaries. `data` is a data
    config (`conf/data/*.yaml`): lengths, selection and padding."""

    def __init__(self, model, tokenizer, data):
        self.model, self.tokenizer = model, tokenizer
        self.max_source_length = source_length_limit(model.config, data.max_source_length)
        self.encoder = ExampleEncoder(tokenizer, ReviewSelection.from_config(data), self.max_source_length,
                                      data.max_target_length)
        self.collator = PrimeraCollator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(DOC_SEP),
                                        pad_to_multiple_of=data.pad_to_multiple_of or attention_window(model.config))

    def encode(self, groups: list[ReviewGroup]) -> list[dict]:
        return [{"input_ids": self.encoder.validation_example(g)["input_ids"]} for g in groups]

    def generate(self, features: list[dict], **generation) -> list[str]:
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
