"""Drops the lines libraries print that nobody running FlavorFusion can act on: torchao's on import on a CPU-only
torch, absl's "Using default tokenizer." (rouge_score), gcsfs's experimental-features note, Lightning's litlogger
tip and its `_pytree` deprecation warning. (transformers' per-file progress bars when saving or loading a model are
turned off where models load, `models/loading.py`: the stages log what they load and save.)"""

import logging
import re
import warnings

# transformers 5.x imports torchao in every process that touches a model class whenever torchao is installed
# (modeling_utils -> integrations/finegrained_fp8 -> quantizers/auto -> quantizers/quantizer_torchao, which runs
# `if is_torchao_available(): from torchao.prototype.safetensors... import ...` at import time), and offers no
# switch to keep it out. FlavorFusion itself imports torchao only inside `quantize.method=int8_dynamic`.
# Importing torchao logs two kinds of lines nobody here can act on; only those are dropped, by logger and message:
# - logger `torchao` (torchao/__init__.py): "Failed to load .../torchao/_C_mxfp8...so" and ".../_C_cutlass_90a...so",
#   torchao's CUDA kernels (they link libtorch_cuda.so), which cannot load on a CPU-only torch. Dropped only
#   there: with a CUDA torch a failed load is a real problem and stays visible.
# - logger `torch.utils._pytree`: "<enum 'KernelPreference'> is an Enum subclass ... register_constant() ... is
#   deprecated", torch 2.13 warning about torchao's own enums (torchao/utils.py `register_as_pytree_constant`).
# - logger `torchao.kernel.intmm`: "Warning: Detected no triton, ...": Triton compiles GPU kernels; a CPU-only torch
#   has none to compile. Dropped only there, as above.
_NO_TRITON = "Warning: Detected no triton"
_TORCHAO_CUDA_KERNEL_FAILED = re.compile(r"Failed to load \S*torchao[/\\]_C_(?:mxfp8|cutlass)\S*\.so: ")
_PYTREE_ENUM_DEPRECATION = "%s is an Enum subclass and is now natively supported by torch.compile"


def _is_torchao_cuda_kernel_failure(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if not (_TORCHAO_CUDA_KERNEL_FAILED.match(message) or message.startswith(_NO_TRITON)):
        return False
    import torch  # already imported: torchao is loading

    return torch.version.cuda is None


def _is_torchao_enum_deprecation(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return (isinstance(record.msg, str) and record.msg.startswith(_PYTREE_ENUM_DEPRECATION) and len(args) == 1
            and getattr(args[0], "__module__", "").startswith("torchao."))


class _TorchaoImportNoise(logging.Filter):
    """Drops the two kinds of lines above and lets every other record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_is_torchao_cuda_kernel_failure(record) or _is_torchao_enum_deprecation(record))


def drop_torchao_import_noise() -> None:
    # on the loggers that emit the lines: a parent logger's filters do not apply to a child's records
    for name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TorchaoImportNoise) for f in logger.filters):
            logger.addFilter(_TorchaoImportNoise())


class _Advert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_libraries() -> None:
    """The other libraries' lines above; warnings and errors of those loggers stay."""
    for name in ("absl", "gcsfs"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _Advert) for f in rank_zero.filters):
        rank_zero.addFilter(_Advert())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
