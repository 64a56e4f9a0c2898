"""`model`: what summarizes (conf/model/*.yaml), and the one model source every stage reads.

A model source is one string under one key, `model.name_or_path`, in every stage (train, evaluate and its
`models`, summarize, serve and its `serve.variants`): a local export directory, a Hugging Face Hub name, or a W&B
model artifact written `wandb:entity/project/name:alias`, or an export directory in object storage (`gs://...`, what
Dataflow workers read). `ModelSource.parse` is the only place that decides
which; `flavorfusion.models.loading.load_pretrained` the only place that loads it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig

from flavorfusion.config.schema import Schema, require
from flavorfusion.errors import ConfigError

WANDB_SCHEME = "wandb:"
_ARTIFACT = re.compile(r"[^/:\s]+/[^/:\s]+/[^/:\s]+(:[^/:\s]+)?")
ATTENTIONS = ("hf", "flex")  # LED encoder self-attention: Hugging Face's chunked one, or FlexAttention / SDPA


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: `kind` is local (a directory), remote (a directory in object storage, `gs://`),
    hub (a Hub name) or wandb (an artifact)."""

    kind: str
    location: str  # the directory, the Hub name, or the artifact reference without `wandb:`
    key: str  # the config key it was read from, for error messages

    @classmethod
    def parse(cls, value: Any, key: str) -> ModelSource:
        if value is None or not str(value).strip():
            raise ConfigError(f"{key} is empty: give an export directory, a Hub name (org/name) or "
                              f"{WANDB_SCHEME}entity/project/name:alias")
        value = str(value).strip()
        if value.startswith(WANDB_SCHEME):
            reference = value.removeprefix(WANDB_SCHEME)
            require(bool(_ARTIFACT.fullmatch(reference)), key, value,
                    f"is not a W&B artifact: write {WANDB_SCHEME}entity/project/name:alias")
            return cls("wandb", reference, key)
        if re.match(r"^[a-z][a-z0-9+.-]*://", value):
            return cls("remote", value, key)
        # a Hub name is `name` or `org/name`; anything deeper, absolute, relative or present on disk is a path
        if os.path.isabs(value) or value.startswith(".") or value.count("/") > 1 or os.path.exists(value):
            return cls("local", value, key)
        return cls("hub", value, key)

    def __str__(self) -> str:
        return f"{WANDB_SCHEME}{self.location}" if self.kind == "wandb" else self.location

    @property
    def name(self) -> str:
        """What outputs and responses call the model: the artifact or Hub name, or a directory's last component
        (never the whole path: it tells a caller about the server's filesystem)."""
        if self.kind == "local":
            return os.path.basename(os.path.normpath(self.location))
        return self.location.rstrip("/").rsplit("/", 1)[-1]


def check_attention(value: str, key: str) -> None:
    require(value in ATTENTIONS, key, value, f"must be one of {', '.join(ATTENTIONS)}")


@dataclass
class OptimizerConf(Schema):
    """`model.optimizer`: a `_partial_` node completed with the model's parameters (torch.optim.AdamW). Another
    optimizer's own arguments are added with `+model.optimizer.NAME=VALUE`."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 3.0e-5
    weight_decay: float = 0.01
    fused: bool = True

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.lr > 0, f"{key}.lr", node.lr, "must be positive")
        require(node.weight_decay >= 0, f"{key}.weight_decay", node.weight_decay, "must be 0 or more")


@dataclass
class SchedulerConf(Schema):
    """`model.scheduler`: a `_partial_` node completed with the optimizer and the number of training steps
    (transformers.get_scheduler), or null for a constant rate."""

    _target_: str = "transformers.get_scheduler"
    _partial_: bool = True
    name: str = "linear"
    num_warmup_steps: int = 0

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.num_warmup_steps >= 0, f"{key}.num_warmup_steps", node.num_warmup_steps, "must be 0 or more")
        if node._target_ == cls._target_:
            from transformers import SchedulerType

            names = [kind.value for kind in SchedulerType]
            require(node.name in names, f"{key}.name", node.name, f"must be one of {', '.join(names)}")


@dataclass
class SummarizerConf(Schema):
    """What every trainable model option shares (conf/model/_summarizer.yaml) -> `Summarizer`'s arguments."""

    _target_: str = MISSING
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    scheduler: SchedulerConf | None = field(default_factory=SchedulerConf)
    gradient_checkpointing: bool = False
    attention: str = "hf"
    compile: bool = False
    num_logged_samples: int = 4
    multi_reference: str = "${metrics.multi_reference}"

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        check_attention(node.attention, f"{key}.attention")
        require(node.num_logged_samples >= 0, f"{key}.num_logged_samples", node.num_logged_samples, "must be 0 or more")


@dataclass
class PretrainedConf(SummarizerConf):
    """model=primera: a Hub model, a local export or a W&B artifact (`model.name_or_path`)."""

    _target_: str = "flavorfusion.models.summarizer.Summarizer.from_pretrained"
    name_or_path: str = MISSING

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        ModelSource.parse(node.name_or_path, f"{key}.name_or_path")


@dataclass
class TinyArchitectureConf(Schema):
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 128
    attention_window: int = 32
    max_source_positions: int = 1024
    max_target_positions: int = 256

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        for name, value in node.items():
            require(value > 0, f"{key}.{name}", value, "must be a positive integer")
        require(node.d_model % node.heads == 0, f"{key}.heads", node.heads, f"must divide {key}.d_model={node.d_model}")
        require(node.attention_window % 2 == 0, f"{key}.attention_window", node.attention_window, "must be even")


@dataclass
class TinyConf(SummarizerConf):
    """model=tiny: a random LED and a byte-level BPE tokenizer trained on the spot (tests, the quickstart)."""

    _target_: str = "flavorfusion.models.summarizer.Summarizer.from_tiny_config"
    tokenizer_corpus: str = MISSING
    vocab_size: int = 2000
    architecture: TinyArchitectureConf = field(default_factory=TinyArchitectureConf)

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(node.vocab_size >= 300, f"{key}.vocab_size", node.vocab_size,
                "must be at least 300 (256 bytes + special tokens)")


@dataclass
class BaselineConf(Schema):
    """An extractive baseline (evaluate only): no weights, not trainable."""

    _target_: str = MISSING
    trainable: bool = False


@dataclass
class RandomReviewConf(BaselineConf):
    _target_: str = "flavorfusion.baselines.RandomReview"
    seed: int = 42


@dataclass
class CentroidReviewConf(BaselineConf):
    _target_: str = "flavorfusion.baselines.CentroidReview"


@dataclass
class LexRankConf(BaselineConf):
    _target_: str = "flavorfusion.baselines.LexRank"
    max_sentences: int = 3
    max_words: int = 60
    threshold: float | None = 0.1

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        for name in ("max_sentences", "max_words"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        require(node.threshold is None or 0 <= node.threshold < 1, f"{key}.threshold", node.threshold,
                "must be in [0, 1) or null")


@dataclass
class InferenceModelConf(Schema):
    """`model` of summarize and serve: the export to load and how its encoder attends."""

    name_or_path: str | None = None
    attention: str = "hf"

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        check_attention(node.attention, f"{key}.attention")
        if node.name_or_path is not None:
            ModelSource.parse(node.name_or_path, f"{key}.name_or_path")
