"""Post-training quantization of an exported summarizer: `conf/quantize/*.yaml`.

Methods (`quantize.method`):
- `int8_dynamic`: int8 weights (per output channel, computed by torchao's
  `Int8DynamicActivationInt8WeightConfig`) and int8 activations quantized at run time by fbgemm's
  fused dynamic-int8 kernel (`torch._int_mm` where fbgemm is missing). torchao's own eager CPU path
  is slower than fp32 on LED here and its safetensors reload through transformers fails for
  `Int8Tensor` (docs/compression.md), so `Int8DynamicLinear` (flavorfusion.models.quantized) keeps
  torchao's weights and swaps the kernel.
- `woq_int8` / `woq_int4`: neural-compressor 3.x weight-only round-to-nearest (RTN); weights are
  packed and dequantized on the fly (smaller, not faster on CPU).

Every quantized export is a Hugging Face directory in the format of `flavorfusion.models.quantized`
(safetensors only, a `quantization_config` naming each quantized module), which loads it: this module
writes exports and depends on `flavorfusion.models`, never the reverse.
"""

import importlib.util
import logging
from collections.abc import Callable

from torch import nn

from flavorfusion.errors import ConfigError
from flavorfusion.models.loading import load_pretrained, save_pretrained
from flavorfusion.models.quantized import (  # noqa: F401  (the quantized-export format, re-exported)
    INSTALL_HINT,
    QUANT_METHOD,
    Int8DynamicLinear,
    inc_module_spec,
    is_quantized_export,
    load_quantized,
    set_module,
)

log = logging.getLogger(__name__)

# which package each method needs (checked before any training starts)
BACKENDS = {"none": None, "int8_dynamic": "torchao", "woq_int8": "neural_compressor", "woq_int4": "neural_compressor"}


def check_backend(method: str) -> None:
    """One-line ConfigError naming the key when the package a method needs is not installed (the method itself is
    checked by its schema, flavorfusion.config.quantize)."""
    backend = BACKENDS.get(method)
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


def quantize_int8_dynamic(model: nn.Module, exclude: list[str]) -> dict:
    names = linear_modules(model, exclude)
    for name in names:
        set_module(model, name, Int8DynamicLinear.from_linear(model.get_submodule(name)))
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
            quantized[name] = {"kind": "inc_woq", **inc_module_spec(module)}
    return quantized


# quantize.method -> function(model, exclude, **options) -> {module name: how to rebuild it}
QUANTIZERS: dict[str, Callable[..., dict]] = {
    "int8_dynamic": lambda model, exclude, **_: quantize_int8_dynamic(model, exclude),
    "woq_int8": lambda model, exclude, group_size=-1, **_: quantize_woq_rtn(model, exclude, 8, group_size),
    "woq_int4": lambda model, exclude, group_size=32, **_: quantize_woq_rtn(model, exclude, 4, group_size),
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


def save_quantized(model: nn.Module, tokenizer, directory: str, quantization_config: dict,
                   config_yaml: str | None = None) -> str:
    """Write a quantized model as safetensors + config.json (with its quantization_config) + tokenizer."""
    model.config.quantization_config = quantization_config
    try:
        return save_pretrained(model, tokenizer, directory, config_yaml)
    finally:  # the in-memory config stays that of the model object, which may be reused
        del model.config.quantization_config


def export_quantized(quantize, fp_export_dir: str, config_yaml: str | None = None) -> str:
    """Quantize the fp export at `fp_export_dir` into `quantize.export_dir`; returns that directory."""
    model, tokenizer = load_pretrained(fp_export_dir)
    options = {k: v for k, v in quantize.items() if k not in ("method", "exclude", "export_dir")}
    qconfig = quantize_model(model, quantize.method, list(quantize.get("exclude") or []), **options)
    return save_quantized(model, tokenizer, quantize.export_dir, qconfig, config_yaml)
