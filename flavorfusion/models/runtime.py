"""The one inference runtime: a model source turned into summaries of review groups.

Local `summarize`, `summarize engine=beam` (its encoding step and its RunInference model handler), `serve`'s
variants and `evaluate` each build an `InferenceRuntime` from a parsed `ModelSource`, the typed `GenerationConf`
and a `Placement`, as Beam's `ModelHandler` and LitServe's `LitAPI` own loading and prediction. None of them
loads, hashes or places a model, or builds generation arguments, itself. The runtime exposes what they need: its
name, the weights' sha256, `encode`, `generate` and the source limit.

A summary depends on its own group alone: `generate` gives the same token ids whether a group is generated alone
or among any batch-mates, on the int8 export (per-token activation scales, exact integer products:
`models/quantized.Int8DynamicLinear`) and, as far as the CPU's float kernels allow, in fp32 (README, "Batch
invariance").
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from flavorfusion.config.generation import GenerationConf
from flavorfusion.config.model import ModelSource
from flavorfusion.config.schema import as_schema
from flavorfusion.data.encoding import DOC_SEP, ExampleEncoder, PrimeraCollator
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import ConfigError
from flavorfusion.models.generation import generate_ids
from flavorfusion.models.loading import (
    attention_window,
    load_pretrained,
    load_tokenizer,
    model_location,
    source_limit,
    target_limit,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs: `device` (auto: the GPU when there is one, not for quantized exports),
    `dtype` (auto: bfloat16 on the GPU, float32 on the CPU) and the encoder `attention` (hf | flex)."""

    device: str = "auto"
    dtype: str = "auto"
    attention: str = "hf"

    @classmethod
    def from_config(cls, cfg) -> Placement:
        """From a summarize or serve config: `device`, `dtype`, `model.attention`."""
        return cls(str(cfg.device), str(cfg.dtype), str(cfg.model.attention))


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


def is_quantized(model: torch.nn.Module) -> bool:
    """A quantized export holds integer weights (int8, packed int4): it runs as loaded, on the CPU."""
    return any(not t.is_floating_point() for t in model.state_dict().values())


def place(model, placement: Placement):
    """The model in eval mode on its device and dtype -> (model, torch device, torch dtype, quantized); a quantized
    export stays on the CPU as loaded. The one place a model is moved for inference."""
    quantized = is_quantized(model)
    device, dtype = placement.device, placement.dtype
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
    if placement.attention != "hf":
        from flavorfusion.models.attention import set_encoder_attention

        set_encoder_attention(model, placement.attention)
    return model.eval(), torch_device, torch_dtype, quantized


# ---- the weights' hash --------------------------------------------------------------------------------------

def _hash_tensor(digest, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


def weights_sha256(model: torch.nn.Module) -> str:
    """A content hash of a loaded model's weights (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        _hash_tensor(digest, name, tensor)
    return digest.hexdigest()


def safetensors_files(directory: str) -> list[str]:
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".safetensors"))


def files_sha256(directory: str) -> str:
    """The same kind of hash over the tensors of an export's safetensors files, read one at a time: what the weights
    are, without building the model. Tied weights are stored once, so it differs from `weights_sha256` of the
    loaded model; the runtime uses one or the other for a source, never both."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    tensors = []
    for path in safetensors_files(directory):
        with safe_open(path, framework="pt") as f:
            tensors += [(name, path) for name in f.keys()]  # noqa: SIM118  (safe_open is not a mapping)
    for name, path in sorted(tensors):
        with safe_open(path, framework="pt") as f:
            _hash_tensor(digest, name, f.get_tensor(name))
    return digest.hexdigest()


# ---- the runtime --------------------------------------------------------------------------------------------

def capped(generation: GenerationConf, max_new_tokens: int) -> GenerationConf:
    """`generation` within what the model's decoder takes."""
    if generation.max_new_tokens <= max_new_tokens:
        return generation
    log.info("generation.max_new_tokens=%d is more than the model's %d decoder positions: capped",
             generation.max_new_tokens, max_new_tokens)
    return dataclasses.replace(generation, max_new_tokens=max_new_tokens,
                               min_new_tokens=min(generation.min_new_tokens, max_new_tokens))


class InferenceRuntime:
    """A model source, loaded once, that encodes review groups and generates their summaries.

    Build it with `from_config` (a stage's config) or `from_model` (a model already in memory); `load()` loads the
    weights (the Beam driver and `encode` need only the tokenizer and config, `load_encoder()`). A built runtime
    pickles without its model, so Beam ships it to workers unloaded; each worker loads its own.
    """

    def __init__(self, source: ModelSource, generation: GenerationConf, data: Any, placement: Placement = Placement()):
        self.source, self.placement = source, placement
        self.generation = generation  # as asked for (provenance); `generate` keeps within the decoder's positions
        self.data = data  # the data config's encoding keys (a DictConfig or a dict)
        self.model = self.tokenizer = self.encoder = None
        self.device = self.dtype = None
        self.quantized = False
        self._sha256: str | None = None

    @classmethod
    def from_config(cls, cfg, name_or_path: str | None = None, key: str = "model.name_or_path",
                    placement: Placement | None = None) -> InferenceRuntime:
        """The runtime of a stage's config: `name_or_path` (default `model.name_or_path`) read under `key`, the
        `generation` group, the `data` config's encoding keys, and `device`, `dtype`, `model.attention`."""
        from omegaconf import OmegaConf

        source = ModelSource.parse(cfg.model.name_or_path if name_or_path is None else name_or_path, key)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        return cls(source, as_schema(cfg.generation, GenerationConf), data, placement or Placement.from_config(cfg))

    @classmethod
    def from_model(cls, model, tokenizer, generation: GenerationConf, data: Any, name: str,
                   placement: Placement = Placement()) -> InferenceRuntime:
        """A runtime around a model already in memory (e.g. `model=tiny` built from config in evaluate)."""
        runtime = cls(ModelSource("memory", name, "model"), generation, data, placement)
        runtime._ready(model, tokenizer)
        return runtime

    def __getstate__(self) -> dict:
        if self.model is not None and self.source.kind == "memory":
            raise TypeError("a runtime around a model in memory cannot be shipped: build it from a model source")
        return {**self.__dict__, "model": None, "tokenizer": None, "encoder": None}

    # -- what every consumer needs ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.source.name

    @property
    def sha256(self) -> str:
        """The weights' hash, computed once: from the export's safetensors files when loading changes no weight
        (so no model is built for it), else from the loaded weights (a Hub model, a `.bin` export, a tokenizer
        that gets `<doc-sep>` added)."""
        if self._sha256 is None:
            directory = None if self.source.kind in ("hub", "memory") else model_location(str(self.source),
                                                                                          self.source.key)[1]
            if directory and safetensors_files(directory) and self._tokenizer_has_doc_sep():
                self._sha256 = files_sha256(directory)
            else:
                self._sha256 = weights_sha256(self.load().model)
        return self._sha256

    @property
    def demo(self) -> bool:
        """An export of the quickstart's demo model (its composed config says so)."""
        from flavorfusion.models.loading import is_demo_export

        if self.source.kind in ("hub", "memory"):
            return False
        return is_demo_export(model_location(str(self.source), self.source.key)[1])

    @property
    def source_limit(self) -> int:
        """The most source tokens an input is given (data.max_source_length within the model's positions)."""
        return self.load_encoder().encoder.max_source_length

    @property
    def info(self) -> dict:
        """Where it runs, for logs and /variants: device, dtype (`int8` for a quantized export), quantized."""
        self.load()
        return {"device": self.device.type, "dtype": "int8 (quantized)" if self.quantized else
                str(self.dtype).removeprefix("torch."), "quantized": self.quantized}

    def encode(self, groups: list[ReviewGroup]) -> list[dict]:
        """Each group's input ids, in PRIMERA's layout, truncated to the source limit."""
        return self.load_encoder().encoder.encode(groups)

    def generate(self, features: list[dict], generation: GenerationConf | None = None) -> list[str]:
        """The summaries of encoded groups, in one generate call (`generation` overrides the runtime's own)."""
        ids = self.generate_ids(features, generation)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def generate_ids(self, features: list[dict], generation: GenerationConf | None = None) -> list[list[int]]:
        """Each encoded group's generated token ids, without the padding its batch-mates left after it."""
        self.load()
        generation = self._generation if generation is None else capped(generation, self.max_new_tokens)
        collate = self.encoder.collator
        rows = [collate([f]) for f in features] if generation.batch_invariant else None
        ids = generate_ids(self.model, collate(features), generation, rows).tolist()
        pad = self.tokenizer.pad_token_id
        return [row[:len(row) - next((i for i, t in enumerate(reversed(row)) if t != pad), len(row))] for row in ids]

    # -- loading ------------------------------------------------------------------------------------------
    def load_encoder(self) -> InferenceRuntime:
        """The tokenizer and the model's config, without its weights: what encoding needs."""
        if self.encoder is None:
            tokenizer, config = load_tokenizer(str(self.source), self.source.key)
            self.encoder = GroupEncoder(tokenizer, config, _as_config(self.data))
        return self

    def load(self) -> InferenceRuntime:
        """The weights, loaded once (fp or quantized), placed, in eval mode."""
        if self.model is None:
            model, tokenizer = load_pretrained(str(self.source), key=self.source.key)
            self._ready(model, tokenizer)
        return self

    def _ready(self, model, tokenizer) -> None:
        self.model, self.device, self.dtype, self.quantized = place(model, self.placement)
        self.tokenizer = tokenizer
        self.encoder = GroupEncoder(tokenizer, model.config, _as_config(self.data))
        self.max_new_tokens = target_limit(model.config)
        self._generation = capped(self.generation, self.max_new_tokens)

    def _tokenizer_has_doc_sep(self) -> bool:
        tokenizer = self.load_encoder().encoder.tokenizer
        return DOC_SEP in tokenizer.get_vocab() and tokenizer.convert_tokens_to_ids(DOC_SEP) < self._vocab_size()

    def _vocab_size(self) -> int:
        from transformers import AutoConfig

        _, directory = model_location(str(self.source), self.source.key)
        return AutoConfig.from_pretrained(directory).vocab_size


def _as_config(data):
    from omegaconf import DictConfig, OmegaConf

    return data if isinstance(data, DictConfig) else OmegaConf.create(data)
