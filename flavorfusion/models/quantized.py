"""The quantized-export format: the quantized Linear modules and how a quantized export is recognized and
loaded. `flavorfusion.compression.quantization` writes such exports; `flavorfusion.models.loading` loads them
through `load_quantized` here, so loading a model never needs the compression package.

A quantized export is a Hugging Face directory whose `model.safetensors` holds plain tensors (int8 / packed
int32 weights and their scales) and whose `config.json` has a `quantization_config` with
`quant_method: flavorfusion` naming each quantized module and what it takes to rebuild it. `load_quantized`
rebuilds the model from the config, swaps those modules in and loads the tensors strictly: no pickle anywhere.
"""

import importlib.util
import json
import os
from collections.abc import Callable

import torch
from torch import nn

from flavorfusion.errors import ConfigError

QUANT_METHOD = "flavorfusion"
INSTALL_HINT = "pip install 'flavorfusion[compress]'"


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _onednn_int8_available() -> bool:
    return hasattr(torch.ops.onednn, "qlinear_pointwise") and torch.backends.mkldnn.is_available()


class Int8DynamicLinear(nn.Module):
    """A Linear with int8 weights (one scale per output channel) and int8 activations quantized at run time with
    one symmetric scale per row (per token), so that a row's output never depends on the other rows of its batch.

    A row x becomes `round(x / s)` with `s = max|x| / 127`; the integer product is exact whatever blocking a kernel
    picks for the batch's shape, and the output is mapped back element by element, `s * (acc * w_scale) + bias`.
    On x86 the product runs in oneDNN's int8 kernel (`onednn::qlinear_pointwise`: AVX2, AVX-512 VNNI or AMX, as the
    CPU has), except for single rows, where oneDNN is slow for narrow layers, and elsewhere in `torch._int_mm`; both
    give the same numbers, so the choice never changes a summary. fbgemm's `linear_dynamic`, used before,
    takes one scale for the whole input tensor, so one batch-mate with large activations coarsened every other
    row's numbers and changed its summary."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None  # oneDNN's packed weights: derived, never saved

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8DynamicLinear":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        probe = nn.Sequential(nn.Linear(linear.in_features, linear.out_features, bias=False))
        probe[0].weight = nn.Parameter(linear.weight.detach().float().clone(), requires_grad=False)
        quantize_(probe, Int8DynamicActivationInt8WeightConfig())
        quantized = probe[0].weight  # torchao Int8Tensor: int8 data + per-row scale
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        module.qweight.copy_(quantized.qdata)
        module.scale.copy_(quantized.scale.reshape(-1).float())
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach().float())
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        low, high = torch.aminmax(x, dim=-1, keepdim=True)
        # the clamp keeps all-zero rows (padding) finite; |x / s| <= 127 as division rounds monotonically
        x_scale = torch.maximum(high, low.neg_()).clamp_(min=torch.finfo(torch.float32).tiny).div_(127)
        x_int8 = torch.div(x, x_scale).round_().to(torch.int8)
        if x.device.type == "cpu" and len(x_int8) > 1 and _onednn_int8_available():
            y = self._product_onednn(x_int8)
        else:
            y = self._product_int_mm(x_int8)
        y = torch.addcmul(self.bias, y, x_scale) if self.bias is not None else y.mul_(x_scale)
        return y.reshape(*shape[:-1], self.out_features)

    def _product_onednn(self, x_int8: torch.Tensor) -> torch.Tensor:
        """`acc * w_scale` (float32) of the exact int32 product, in oneDNN's quantized linear."""
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.qweight, None)
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        return torch.ops.onednn.qlinear_pointwise(x_int8, 1.0, 0, self._packed, self.scale, zero_points, None, 1.0, 0,
                                                  torch.float32, "none", [], "")

    def _product_int_mm(self, x_int8: torch.Tensor) -> torch.Tensor:
        """The same as `_product_onednn` with `torch._int_mm` (qweight's transposed view is its fastest layout)."""
        return torch._int_mm(x_int8, self.qweight.t()).to(torch.float32).mul_(self.scale)

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None  # new weights: pack again
        return super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def inc_module_spec(module) -> dict:
    """What it takes to rebuild one neural-compressor INCWeightOnlyLinear before loading its tensors."""
    return {
        "in_features": module.in_features, "out_features": module.out_features, "dtype": module.dtype,
        "bits": module.bits, "group_size": module.group_size, "zp": hasattr(module, "qzeros"),
        "bias": getattr(module, "bias", None) is not None, "scale_dtype": str(module.scale_dtype),
        "compression_dtype": str(module.compression_dtype), "compression_dim": module.compression_dim,
        "g_idx": getattr(module, "g_idx", None) is not None, "use_optimum_format": module.use_optimum_format,
    }


def _torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name.removeprefix("torch."))


def _build_inc_module(kwargs: dict) -> nn.Module:
    from neural_compressor.torch.algorithms.weight_only.modules import INCWeightOnlyLinear

    kwargs = dict(kwargs, scale_dtype=_torch_dtype(kwargs["scale_dtype"]),
                  compression_dtype=_torch_dtype(kwargs["compression_dtype"]))
    return INCWeightOnlyLinear(**kwargs)


MODULE_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "int8_dynamic": lambda spec: Int8DynamicLinear(spec["in_features"], spec["out_features"], spec["bias"]),
    "inc_woq": lambda spec: _build_inc_module({k: v for k, v in spec.items() if k != "kind"}),
}
# packages a module kind needs to be rebuilt
MODULE_PACKAGES = {"int8_dynamic": (), "inc_woq": ("neural_compressor", "accelerate")}


def refuse_for_training(directory: str, key: str, shown: str | None = None) -> None:
    """A quantized export can be evaluated or served, not trained: a ConfigError naming `key`."""
    if is_quantized_export(directory):
        raise ConfigError(f"{key}={shown or directory} is a quantized export: evaluate or serve it; "
                          "train from the fp export it was made from")


def is_quantized_export(directory: str) -> bool:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        config = json.load(f)
    return (config.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD


def load_quantized(directory: str):
    """(model, tokenizer) of a quantized export: the model is built from config.json, the quantized
    modules are swapped in, then every tensor is loaded strictly from model.safetensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(directory)
    qconfig = config.quantization_config
    del config.quantization_config
    for kind in sorted({spec["kind"] for spec in qconfig["modules"].values()}):
        for package in MODULE_PACKAGES[kind]:
            if importlib.util.find_spec(package) is None:
                raise ConfigError(f"{directory} holds {kind} modules ({qconfig.get('method')}): loading it needs "
                                  f"the `{package}` package, which is not installed ({INSTALL_HINT})")
    with torch.device("meta"):  # no time spent initializing weights that are loaded next
        model = AutoModelForSeq2SeqLM.from_config(config)
    for name, spec in qconfig["modules"].items():
        set_module(model, name, MODULE_BUILDERS[spec["kind"]](spec))
    state = load_file(os.path.join(directory, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()  # embeddings shared by encoder, decoder (and lm_head when it stayed fp32)
    for name in qconfig["modules"]:  # a quantized lm_head must not get the embedding tied back onto it
        model.get_submodule(name)._parameters.pop("weight", None)
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unexpected or still_meta:
        raise ValueError(f"{directory}: checkpoint does not match its quantization_config "
                         f"(unexpected {unexpected[:3]}, missing {still_meta[:3]})")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return model, tokenizer
