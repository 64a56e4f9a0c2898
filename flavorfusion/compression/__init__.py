"""Compression of exported summarizers: pruning callbacks, post-training quantization, size and
sparsity measures. Heavy backends (torchao, neural-compressor) are imported only when used."""

import logging

from omegaconf import DictConfig

from flavorfusion import tracking

log = logging.getLogger(__name__)


def model_artifact_type(prune: DictConfig) -> str:
    """W&B artifact type of the fp export: `pruned_model` when pruning ran, else `model`."""
    return "pruned_model" if "_target_" in prune and prune.get("amount", 0.0) > 0 else "model"


def finalize_pruning(trainer, model):
    """Make every pruning callback's work final on `model` (structured: shrink the layers) before export."""
    from flavorfusion.compression.pruning import finalize_pruning as finalize

    return finalize(trainer, model)


def export_quantized_model(quantize: DictConfig, export_dir: str, loggers=(), metadata: dict | None = None,
                           config_yaml: str | None = None) -> str | None:
    """Quantize the fp export into `quantize.export_dir` (nothing for `quantize=none`) and upload it as a
    `quantized_model` W&B artifact when a W&B logger asks for model artifacts."""
    if quantize.get("method", "none") == "none":
        return None
    from flavorfusion.compression.quantization import export_quantized

    quantized_dir = export_quantized(quantize, export_dir, config_yaml)
    log.info("exported %s model to %s", quantize.method, quantized_dir)
    for logger in loggers:
        if getattr(logger, "log_model_artifact", False):
            tracking.log_model_artifact(logger, quantized_dir, name=f"quantized_model-{logger.experiment.id}",
                                        artifact_type="quantized_model",
                                        metadata={**(metadata or {}), "quantize": quantize.method})
    return quantized_dir
