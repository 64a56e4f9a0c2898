"""What compression buys: size of an export on disk and zipped (the original code's measure), and
the share of zeros in the targeted layers."""

import os
import tempfile
import zipfile
from collections.abc import Sequence

import torch
from torch import nn

from flavorfusion.compression.pruning import DEFAULT_SUFFIXES
from flavorfusion.models.quantized import Int8DynamicLinear

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weight_files(directory: str) -> list[str]:
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{directory} holds no model weights")
    return files


def size_on_disk(directory: str) -> int:
    """Bytes of the weight files of an export (tokenizer and config files are noise)."""
    return sum(os.path.getsize(f) for f in weight_files(directory))


def zipped_size(directory: str) -> int:
    """Bytes of the weight files zipped with deflate: zeros and repeated values compress, which is how
    the original code saw unstructured pruning pay (its zipped size; docs/compression.md)."""
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in weight_files(directory):
                archive.write(path, arcname=os.path.basename(path))
        return tmp.tell()


def _weight_of(module: nn.Module) -> torch.Tensor | None:
    if isinstance(module, nn.Linear):
        return module.weight
    if isinstance(module, Int8DynamicLinear):  # symmetric int8: a zero weight stays 0
        return module.qweight
    return None  # packed weight-only formats: zeros cannot be read off the packed words


def sparsity(model: nn.Module, suffixes: Sequence[str] | None = None) -> float | None:
    """Share of zero weights over the modules whose names end with one of `suffixes` (None: the layers
    `prune=l1_unstructured` prunes by default); None when none of them holds a readable weight (e.g. packed int4)."""
    suffixes = DEFAULT_SUFFIXES if suffixes is None else suffixes
    zeros = total = 0
    for name, module in model.named_modules():
        if not any(name == s or name.endswith("." + s) for s in suffixes):
            continue
        weight = _weight_of(module)
        if weight is None:
            continue
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else None


def ffn_neurons(model: nn.Module) -> int | None:
    """FFN width of the first layer with an fc1 (structured pruning shrinks it)."""
    for _, module in model.named_modules():
        fc1 = getattr(module, "fc1", None)
        if fc1 is not None and hasattr(fc1, "out_features"):
            return fc1.out_features
    return None
