"""The LightningModule: fine-tunes an LED summarizer and scores its generations with ROUGE."""

import dataclasses
import logging
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from flavorfusion.config.generation import GenerationConf
from flavorfusion.models import loading, tiny
from flavorfusion.models.generation import MODEL_INPUTS, generate_ids
from flavorfusion.rouge import ROUGE_TYPES, rouge

log = logging.getLogger(__name__)



class Summarizer(L.LightningModule):
    """Wraps a Hugging Face seq2seq model (LED / PRIMERA) and its tokenizer.

    Build it with `Summarizer.from_pretrained` (Hub name, local export, W&B artifact) or
    `Summarizer.from_tiny_config` (random LED for tests and the quickstart).
    """

    def __init__(self, model, tokenizer, optimizer: Callable, scheduler: Callable | None = None,
                 generation: GenerationConf | dict | None = None, gradient_checkpointing: bool = False,
                 attention: str = "hf", compile: bool = False, num_logged_samples: int = 4,
                 multi_reference: str = "mean"):
        super().__init__()
        self.multi_reference = multi_reference
        self.save_hyperparameters(ignore=["model", "tokenizer", "optimizer", "scheduler"])
        self.model = model
        self.tokenizer = tokenizer
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.generation = generation if isinstance(generation, GenerationConf) else GenerationConf(**(generation or {}))
        self.num_logged_samples = num_logged_samples
        if attention != "hf":
            from flavorfusion.models.attention import set_encoder_attention

            set_encoder_attention(model, attention)
        if gradient_checkpointing:
            # non-reentrant: works with frozen inputs and under autocast; HF checkpoints only in training mode
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if compile:
            compile_layers(model)
        self._predictions: list[str] = []
        self._references: list[list[str]] = []
        self._gen_lengths: list[int] = []

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs):
        """A Hub name, a local export or a W&B artifact (`wandb:entity/project/name:alias`), loaded for training."""
        model, tokenizer = loading.load_pretrained(name_or_path, for_training=True)
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_tiny_config(cls, tokenizer_corpus: str, vocab_size: int = 2000, architecture: dict | None = None,
                         **kwargs):
        tokenizer = tiny.train_tokenizer(tokenizer_corpus, vocab_size)
        return cls(tiny.build_tiny_led(tokenizer, **(architecture or {})), tokenizer, **kwargs)

    @property
    def attention_window(self) -> int:
        return loading.attention_window(self.model.config)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).loss

    # `from_pretrained` returns a model in eval mode and Lightning keeps each submodule's mode, so training
    # mode (dropout, gradient checkpointing) is set here explicitly, at every epoch and after each validation.
    def on_fit_start(self) -> None:
        self.train()

    def on_train_epoch_start(self) -> None:
        self.train()

    def on_validation_model_eval(self) -> None:
        self.eval()

    def on_validation_model_train(self) -> None:
        self.train(self.trainer.state.fn == "fit")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def generate_ids(self, batch: dict, **overrides) -> torch.Tensor:
        """Generated token ids of a collated batch through the project's generation path (eval mode, the LED
        static-cache fix on the GPU; attention and global attention masks always passed); `overrides` replace
        fields of the run's `generation` settings."""
        return generate_ids(self.model, batch, dataclasses.replace(self.generation, **overrides))

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def generate(self, batch: dict, **overrides) -> list[str]:
        return self.decode(self.generate_ids(batch, **overrides))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if batch["labels"].shape[1] > 0:
            self.log("val/loss", self(batch), prog_bar=True, batch_size=len(batch["input_ids"]), sync_dist=True)
        # the dynamic cache: validation batches vary in length and are few, so compiling a static-cache step per
        # shape (a compile per new shape on a GPU) would not pay
        ids = self.generate_ids(batch, cache="dynamic")
        self._gen_lengths += (ids != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        self._predictions += self.decode(ids)
        self._references += batch["summary"]

    def on_validation_epoch_end(self) -> None:
        scores = rouge(self._predictions, self._references, self.multi_reference)
        scores["gen_len"] = sum(self._gen_lengths) / max(len(self._gen_lengths), 1)
        self.log_dict({f"val/{name}": value for name, value in scores.items()}, sync_dist=True)
        self._log_samples()
        self._predictions, self._references, self._gen_lengths = [], [], []

    def _log_samples(self) -> None:
        n = self.num_logged_samples
        if not n or self.trainer.sanity_checking:
            return
        rows = [[self.global_step, p, " ||| ".join(r)] for p, r in
                zip(self._predictions[:n], self._references[:n], strict=True)]
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text("val/samples", columns=["step", "generated", "references"], data=rows)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused optimizer even under bf16, where no
        # GradScaler exists and the gradients are not scaled; without a scaler, clipping here is exact.
        # (fp16 with a scaler and a fused optimizer is refused by validate_train.)
        if gradient_clip_val and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        # no weight decay on biases and LayerNorm weights, as in Hugging Face's Trainer
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
        optimizer = self.optimizer_factory(params=[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer,
                                           num_training_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def compile_layers(model, backend: str = "inductor") -> int:
    """Regional compilation: each encoder and decoder layer compiled in place (`nn.Module.compile`), so
    parameter names, checkpoints and the export stay those of the plain model. Returns the layer count."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.compile(backend=backend)
    return len(layers)


__all__ = ["Summarizer", "ROUGE_TYPES"]
