"""Post-training quantization of an exported summarizer: `conf/quantize/*.yaml`.

Methods (`quantize.method`):
- `int8_dynamic`: int8 weights (per output channel, computed by torchao's
  `Int8DynamicActivationInt8WeightConfig`) and int8 activations quantized at run time by fbgemm's
  fused dynamic-int8 kernel (`torch._int_mm` where fbgemm is missing). torchao's own eager CPU path
  is slower than fp32 on LED here and its safetensors reload through transformers fails for
  `Int8Tensor` (docs/compression.md), so the module below keeps torchao's weights and swaps the kernel.
- `woq_int8` / `woq_int4`: neural-compressor 3.x weight-only round-to-nearest (RTN); weights are
  packed and dequantized on the fly (smaller, not faster on CPU).

Every quantized export is a Hugging Face directory whose `model.safetensors` holds plain tensors
(int8 / packed int32 weights and their scales) and whose `config.json` has a `quantization_config`
with `quant_method: flavorfusion` naming each quantized module. `load_quantized` rebuilds the model
from the config, swaps those modules in and loads the tensors strictly: no pickle anywhere.
"""

import importlib.util
import json
import logging
import os
from collections.abc import Callable

import torch
from torch import nn

from flavorfusion.errors import ConfigError

log = logging.getLogger(__name__)

QUANT_METHOD = "flavorfusion"
# which package each method needs (checked before any training starts)
BACKENDS = {"none": None, "int8_dynamic": "torchao", "woq_int8": "neural_compressor", "woq_int4": "neural_compressor"}
INSTALL_HINT = "pip install 'flavorfusion[compress]'"


def validate_quantize(quantize) -> None:
    """One-line ConfigError naming the key when the method is unknown or its backend is missing."""
    method = quantize.get("method", "none")
    if method not in BACKENDS:
        raise ConfigError(f"quantize.method={method} is not one of {', '.join(BACKENDS)}")
    backend = BACKENDS[method]
    if backend and importlib.util.find_spec(backend) is None:
        raise ConfigError(f"quantize.method={method} needs the `{backend}` package, which is not installed "
                          f"({INSTALL_HINT})")
    if method.startswith("woq") and importlib.util.find_spec("accelerate") is None:
        raise ConfigError(f"quantize.method={method} needs the `accelerate` package ({INSTALL_HINT})")


def _is_excluded(name: str, exclude: list[str]) -> bool:
    return any(name == e or name.endswith("." + e) for e in exclude)


def linear_modules(model: nn.Module, exclude: list[str] = ()) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not _is_excluded(name, list(exclude))]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _fbgemm_available() -> bool:
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm"))


class Int8DynamicLinear(nn.Module):
    """A Linear with int8 weights (one scale per output channel) and int8 activations quantized at run
    time. The saved tensors are torchao's int8 weights and scales; the product runs in fbgemm's fused
    dynamic-int8 kernel (what `torch.ao.quantization.quantize_dynamic` uses, 2-3x faster than fp32 on
    LED here) with weights packed on first use, or in `torch._int_mm` where fbgemm is missing."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None  # fbgemm's packed weights: derived, never saved

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

    def _pack(self):
        import warnings

        with warnings.catch_warnings():  # quantized tensors are deprecated in torch; their kernels are not gone
            warnings.simplefilter("ignore")
            weight = torch._make_per_channel_quantized_tensor(
                self.qweight, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
            return torch.ops.quantized.linear_prepack(weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and _fbgemm_available():
            if self._packed is None:
                self._packed = self._pack()
            # reduce_range: 7-bit activations, so int16 accumulation cannot saturate on CPUs without VNNI
            return torch.ops.quantized.linear_dynamic(x.float(), self._packed, True)
        return self._forward_int_mm(x)

    def _forward_int_mm(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        # symmetric per-token scale; the clamp keeps all-zero rows (padding) finite
        x_scale = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True).clamp_(min=1e-12).div_(127)
        x_int8 = torch.round(x / x_scale).to(torch.int8)
        # qweight stays [out, in]; its transposed view is the fastest layout for oneDNN here
        y = torch._int_mm(x_int8, self.qweight.t()).to(torch.float32)
        y.mul_(x_scale).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None  # new weights: pack again
        return super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _inc_module_kwargs(module) -> dict:
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


def quantize_int8_dynamic(model: nn.Module, exclude: list[str]) -> dict:
    names = linear_modules(model, exclude)
    for name in names:
        _set_module(model, name, Int8DynamicLinear.from_linear(model.get_submodule(name)))
    return {name: {"kind": "int8_dynamic", "bias": model.get_submodule(name).bias is not None} for name in names}


def quantize_woq_rtn(model: nn.Module, exclude: list[str], bits: int, group_size: int) -> dict:
    """neural-compressor's weight-only round-to-nearest on every Linear but the excluded ones."""
    from neural_compressor.torch.quantization import RTNConfig, convert, prepare

    config = RTNConfig(bits=bits, group_size=group_size, use_sym=True, use_layer_wise=False)
    for name in exclude:  # neural-compressor skips lm_head by default; these too
        config.set_local(name, RTNConfig(dtype="fp32"))
    targets = set(linear_modules(model, exclude))
    model = convert(prepare(model, config))
    quantized = {}
    for name, module in model.named_modules():
        if type(module).__name__ == "INCWeightOnlyLinear" and name in targets:
            quantized[name] = {"kind": "inc_woq", **_inc_module_kwargs(module)}
    return quantized


# quantize.method -> function(model, exclude, **options) -> {module name: how to rebuild it}
QUANTIZERS: dict[str, Callable[..., dict]] = {
    "int8_dynamic": lambda model, exclude, **_: quantize_int8_dynamic(model, exclude),
    "woq_int8": lambda model, exclude, group_size=-1, **_: quantize_woq_rtn(model, exclude, 8, group_size),
    "woq_int4": lambda model, exclude, group_size=32, **_: quantize_woq_rtn(model, exclude, 4, group_size),
}
MODULE_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "int8_dynamic": lambda spec: Int8DynamicLinear(spec["in_features"], spec["out_features"], spec["bias"]),
    "inc_woq": lambda spec: _build_inc_module({k: v for k, v in spec.items() if k != "kind"}),
}


def quantize_model(model: nn.Module, method: str, exclude: list[str] = (), **options) -> dict:
    """Quantize `model` in place (on CPU); returns the `quantization_config` that `load_quantized` reads."""
    if method not in QUANTIZERS:
        raise ConfigError(f"quantize.method={method} is not one of {', '.join(QUANTIZERS)}")
    model.eval().to("cpu")
    modules = QUANTIZERS[method](model, list(exclude), **options)
    for name, spec in modules.items():
        if spec["kind"] == "int8_dynamic":
            module = model.get_submodule(name)
            spec.update(in_features=module.in_features, out_features=module.out_features)
    log.info("quantized %d Linear modules with %s", len(modules), method)
    return {"quant_method": QUANT_METHOD, "method": method, "modules": modules}


def is_quantized_export(directory: str) -> bool:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        config = json.load(f)
    return (config.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD


def save_quantized(model: nn.Module, tokenizer, directory: str, quantization_config: dict,
                   config_yaml: str | None = None) -> str:
    """Write a quantized model as safetensors + config.json (with its quantization_config) + tokenizer."""
    from flavorfusion.models.loading import save_pretrained

    model.config.quantization_config = quantization_config
    try:
        return save_pretrained(model, tokenizer, directory, config_yaml)
    finally:  # the in-memory config stays that of the model object, which may be reused
        del model.config.quantization_config


def load_quantized(directory: str):
    """(model, tokenizer) of a quantized export: the model is built from config.json, the quantized
    modules are swapped in, then every tensor is loaded strictly from model.safetensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(directory)
    qconfig = config.quantization_config
    del config.quantization_config
    for spec in qconfig["modules"].values():
        if spec["kind"] == "inc_woq":
            validate_quantize({"method": "woq_int8"})
    with torch.device("meta"):  # no time spent initializing weights that are loaded next
        model = AutoModelForSeq2SeqLM.from_config(config)
    for name, spec in qconfig["modules"].items():
        _set_module(model, name, MODULE_BUILDERS[spec["kind"]](spec))
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


def export_quantized(quantize, fp_export_dir: str, config_yaml: str | None = None) -> str:
    """Quantize the fp export at `fp_export_dir` into `quantize.export_dir`; returns that directory."""
    from flavorfusion.models.loading import load_pretrained

    model, tokenizer = load_pretrained(fp_export_dir)
    options = {k: v for k, v in quantize.items() if k not in ("method", "exclude", "export_dir")}
    qconfig = quantize_model(model, quantize.method, list(quantize.get("exclude") or []), **options)
    return save_quantized(model, tokenizer, quantize.export_dir, qconfig, config_yaml)
