"""Pruning callbacks of the Lightning trainer: `conf/prune/*.yaml`.

- `L1UnstructuredPruning`: the original code's global L1 magnitude pruning (Lightning's `ModelPruning`)
  of the Linear modules whose names end with configured suffixes; zeros, same shapes.
- `StructuredPruning`: removes whole FFN neurons (rows of fc1, columns of fc2) by importance and
  shrinks the Linear layers at export, so dense inference is faster.

Schedules (`prune.schedule`):
- `oneshot`: prune the loaded model at the start of fit and stop before any step: the export is the
  pruned model without fine-tuning (the original prune-only mode; works on a W&B artifact too).
- `gradual`: raise sparsity at the start of each epoch along a cubic curve (Zhu & Gupta, 2017) up to
  `prune.amount` two thirds into the run; the last third fine-tunes the pruned model to recover.
"""

import logging
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelPruning
from torch import nn
from torch.nn.utils import prune

from flavorfusion.config.prune import SCHEDULES, check_amount, check_schedule  # noqa: F401
from flavorfusion.errors import ConfigError

log = logging.getLogger(__name__)

# The one list of the layers pruned by default (`prune.suffixes: null`) and measured by default
# (`compression.measures.sparsity`). fc1/fc2: FFN; output/out_proj: attention output projections
# (encoder/decoder); query_global/key_global/value_global: the Longformer global-attention projections.
DEFAULT_SUFFIXES = ("fc1", "fc2", "output", "out_proj", "query_global", "key_global", "value_global")
def select_linear_modules(model: nn.Module, suffixes: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    """The Linear modules whose names end with one of `suffixes`; a suffix that matches none is an error."""
    selected = []
    for suffix in suffixes:
        matches = [(name, module) for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and (name == suffix or name.endswith("." + suffix))]
        if not matches:
            raise ConfigError(f"prune.suffixes: {suffix!r} matches no Linear module of "
                              f"{type(model).__name__}")
        selected += [m for m in matches if m[0] not in {name for name, _ in selected}]
    return selected


def cumulative_sparsity(amount: float, epoch: int, max_epochs: int) -> float:
    """Target sparsity during `epoch`: a cubic ramp that reaches `amount` two thirds into the run, so
    the last third fine-tunes the pruned model; with a single epoch the target is reached at once."""
    ramp = max(1, round(2 * max_epochs / 3))
    progress = min(1.0, (epoch + 1) / ramp)
    return amount * (1 - (1 - progress) ** 3)


def step_amount(previous: float, target: float) -> float:
    """torch.nn.utils.prune removes a fraction of the weights still unpruned; from cumulative targets."""
    return 0.0 if target <= previous else 1 - (1 - target) / (1 - previous)


class _Schedule:
    """The schedule both pruning callbacks share. The export is the best checkpoint: when a gradual
    run reaches the target sparsity, the best-checkpoint race starts over, so only checkpoints at the
    target compete. Without a checkpoint callback `finalize` tops a model up (logged as a warning)."""

    amount: float
    schedule: str
    current: float = 0.0

    def _init_schedule(self, amount: float, schedule: str) -> None:
        check_amount(amount)  # the schema's checks: the callbacks are also built in Python, without a config
        check_schedule(schedule)
        self.amount, self.schedule, self.current = amount, schedule, 0.0

    def target_for(self, trainer: L.Trainer, epoch: int) -> float:
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        return cumulative_sparsity(self.amount, epoch, max_epochs)

    def _below_target(self) -> bool:
        return self.current < self.amount - 1e-6

    def _restart_best_checkpoint(self, trainer: L.Trainer) -> None:
        """Forget the best checkpoints saved below the target sparsity (and delete their files)."""
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or not callback.monitor or not callback.best_k_models:
                continue
            for path in callback.best_k_models:
                if path != callback.last_model_path:
                    trainer.strategy.remove_checkpoint(path)
            callback.best_k_models, callback.kth_best_model_path, callback.best_model_path = {}, "", ""
            callback.best_model_score = None
            callback.kth_value = torch.tensor(torch.inf if callback.mode == "min" else -torch.inf)
            log.info("target sparsity reached: earlier checkpoints no longer compete for best %s", callback.monitor)

    def _prune_for_epoch(self, trainer: L.Trainer) -> None:
        was_below = self._below_target()
        self._prune_to(self.target_for(trainer, trainer.current_epoch))
        if was_below and not self._below_target():
            self._restart_best_checkpoint(trainer)

    def _stop_before_training(self, trainer: L.Trainer) -> None:
        trainer.should_stop = True
        log.info("prune.schedule=oneshot: exporting the pruned model without training")


class L1UnstructuredPruning(_Schedule, ModelPruning):
    """Global L1 magnitude pruning of the weights of Linear modules selected by name suffix."""

    def __init__(self, amount: float = 0.5, schedule: str = "gradual",
                 suffixes: Sequence[str] | None = None, verbose: int = 1):
        self._init_schedule(amount, schedule)
        self.suffixes = tuple(DEFAULT_SUFFIXES if suffixes is None else suffixes)
        super().__init__(pruning_fn="l1_unstructured", parameters_to_prune=(), parameter_names=["weight"],
                         use_global_unstructured=True, amount=amount, make_pruning_permanent=True,
                         prune_on_train_epoch_end=True, verbose=verbose)
        self.pruned_modules: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._parameters_to_prune:  # setup runs again on a second fit
            return
        selected = select_linear_modules(pl_module.model, self.suffixes)
        self.pruned_modules = [name for name, _ in selected]
        self._parameters_to_prune = [(module, "weight") for _, module in selected]
        log.info("l1_unstructured pruning of %d modules (suffixes %s): %s", len(selected),
                 ", ".join(self.suffixes), ", ".join(self.pruned_modules))

    def _prune_to(self, target: float) -> None:
        amount = step_amount(self.current, target)
        if amount > 0:
            self.apply_pruning(amount)
            self.current = target

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule == "oneshot":
            self._prune_to(self.amount)
            self.make_pruning_permanent(pl_module)
            self._stop_before_training(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule == "gradual":
            self._prune_for_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # pruning happens at epoch start, so each epoch trains and validates one sparsity

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def finalize(self, model: nn.Module) -> nn.Module:
        self.make_pruning_permanent(model)
        modules = [m for m, _ in self._parameters_to_prune]
        zeros = sum(int((m.weight == 0).sum()) for m in modules)
        total = sum(m.weight.numel() for m in modules)
        if self.current > 0 and zeros / max(total, 1) < self.amount - 1e-3:
            log.warning("the best checkpoint has %.2f%% zeros, below prune.amount=%s: pruning it to the target "
                        "without further training", 100 * zeros / total, self.amount)
            prune.global_unstructured([(m, "weight") for m in modules], prune.L1Unstructured, amount=self.amount)
            for m in modules:
                prune.remove(m, "weight")
            zeros = sum(int((m.weight == 0).sum()) for m in modules)
        log.info("pruned modules (%d, %.2f%% zeros): %s", len(self.pruned_modules), 100 * zeros / max(total, 1),
                 ", ".join(self.pruned_modules))
        return model


def ffn_pairs(model: nn.Module) -> list[tuple[str, nn.Linear, nn.Linear]]:
    """(layer name, fc1, fc2) of every transformer layer with an FFN."""
    return [(name, module.fc1, module.fc2) for name, module in model.named_modules()
            if isinstance(getattr(module, "fc1", None), nn.Linear) and isinstance(getattr(module, "fc2", None), nn.Linear)]


def neuron_importance(fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor:
    """A neuron's weight magnitude: ||row of fc1|| * ||column of fc2|| (its in- and out-going weights)."""
    with torch.no_grad():
        return fc1.weight.float().norm(dim=1) * fc2.weight.float().norm(dim=0)


def _shrink_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    keep = keep.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, keep)
    shrunk = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None,
                       device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        shrunk.weight.copy_(weight)
        if linear.bias is not None:
            shrunk.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach().index_select(0, keep))
    return shrunk


def shrink_ffn(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Drop the masked-out FFN neurons for real: smaller fc1/fc2 and the config's FFN sizes to match,
    so `from_pretrained` rebuilds the same shapes. Every layer keeps the same number of neurons."""
    kept = set()
    for name, module in model.named_modules():
        if name in masks:
            keep = masks[name].nonzero().flatten()
            module.fc1 = _shrink_linear(module.fc1, keep, dim=0)
            module.fc2 = _shrink_linear(module.fc2, keep, dim=1)
            kept.add(len(keep))
    if len(kept) > 1:
        raise ValueError(f"FFN layers kept different numbers of neurons {sorted(kept)}: the config holds one size")
    if kept:
        size = kept.pop()
        config = model.config
        for key in ("encoder_ffn_dim", "decoder_ffn_dim", "ffn_dim", "intermediate_size"):
            if hasattr(config, key):
                setattr(config, key, size)
    return model


class StructuredPruning(_Schedule, Callback):
    """Removes the least important FFN neurons of every layer (the same share in each layer).

    While training, pruned neurons are held at zero after every optimizer step; `finalize` (called
    before export) shrinks fc1/fc2 and updates `encoder_ffn_dim`/`decoder_ffn_dim`. Attention heads
    are kept: LED's config has one head count for all layers and LED implements no head pruning, so
    a model with fewer heads in some layers would not reload with `from_pretrained`.
    """

    def __init__(self, amount: float = 0.5, schedule: str = "gradual"):
        self._init_schedule(amount, schedule)
        self.masks: dict[str, torch.Tensor] = {}
        self._layers: dict[str, tuple[nn.Linear, nn.Linear]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._layers:
            return
        pairs = ffn_pairs(pl_module.model)
        if not pairs:
            raise ConfigError(f"prune=structured: {type(pl_module.model).__name__} has no fc1/fc2 FFN layers")
        self._layers = {name: (fc1, fc2) for name, fc1, fc2 in pairs}
        self.masks = {name: torch.ones(fc1.out_features, dtype=torch.bool) for name, fc1, _ in pairs}
        log.info("structured pruning of the FFN neurons of %d layers: %s", len(pairs), ", ".join(self._layers))

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for name, (fc1, fc2) in self._layers.items():
            mask = self.masks[name].to(fc1.weight.device)
            fc1.weight.mul_(mask[:, None].to(fc1.weight.dtype))
            if fc1.bias is not None:
                fc1.bias.mul_(mask.to(fc1.bias.dtype))
            fc2.weight.mul_(mask[None, :].to(fc2.weight.dtype))

    def _prune_to(self, target: float) -> None:
        if target <= self.current:
            return
        for name, (fc1, fc2) in self._layers.items():
            n_prune = int(round(target * fc1.out_features))
            importance = neuron_importance(fc1, fc2).cpu()
            importance[~self.masks[name]] = -1  # already pruned neurons stay pruned
            mask = torch.ones_like(self.masks[name])
            mask[importance.argsort()[:n_prune]] = False
            self.masks[name] = mask
        self.current = target
        self._apply_masks()
        log.info("structured pruning: %.1f%% of FFN neurons removed", 100 * target)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule == "oneshot":
            self._prune_to(self.amount)
            self._stop_before_training(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule == "gradual":
            self._prune_for_epoch(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.current > 0:
            self._apply_masks()  # the optimizer step (momentum, weight decay) moved them off zero

    def finalize(self, model: nn.Module) -> nn.Module:
        """Shrink the layers (after the best checkpoint is loaded, whose pruned neurons are zero)."""
        if self.current == 0:
            return model
        # the final masks hold every neuron pruned at any epoch, so they also fit an earlier best checkpoint
        masks = {name: self.masks[name] for name, _, _ in ffn_pairs(model)}
        if any((neuron_importance(fc1, fc2).cpu()[~masks[name]] > 0).any() for name, fc1, fc2 in ffn_pairs(model)):
            log.warning("the best checkpoint was saved below prune.amount=%s: pruning it to the target without "
                        "further training", self.amount)
        shrink_ffn(model, masks)
        log.info("pruned modules: fc1/fc2 of %d layers shrunk to %d neurons (%s)", len(masks),
                 next(iter(masks.values())).sum().item(), ", ".join(masks))
        return model


def finalize_pruning(trainer: L.Trainer, model: nn.Module) -> nn.Module:
    """Make the pruning of every pruning callback final on `model` before it is exported."""
    for callback in trainer.callbacks:
        if isinstance(callback, _Schedule):
            model = callback.finalize(model)
    return model
