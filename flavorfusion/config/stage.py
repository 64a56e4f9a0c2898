"""The stage roots: `train`, `evaluate`, `summarize`, `serve`, `prepare` (conf/<stage>.yaml) and `pipeline` (DVC's
composed params). Each root lists its own keys; groups are typed by their own schemas, and checks that involve
several groups sit in the root's `check`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from flavorfusion.config.model import BaselineConf, InferenceModelConf
from flavorfusion.config.schema import Schema, require
from flavorfusion.config.serve import ServerConf
from flavorfusion.errors import ConfigError

MULTI_REFERENCE = ("mean", "max")
MATMUL_PRECISIONS = ("highest", "high", "medium")
SPLITS = ("validation", "all")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class MetricsConf(Schema):
    # with several references, an example's ROUGE is the mean of its per-reference F-measures or their max
    multi_reference: str = "mean"

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.multi_reference in MULTI_REFERENCE, f"{key}.multi_reference", node.multi_reference,
                f"must be one of {', '.join(MULTI_REFERENCE)}")


@dataclass
class RunKeys(Schema):
    """What train and evaluate share: a W&B group and tags, the seed, ROUGE's settings, and the groups both compose."""

    group: str | None = None
    tags: list[str] = field(default_factory=list)
    seed: int = 42
    metrics: MetricsConf = field(default_factory=MetricsConf)
    data: Any = None
    model: Any = None
    generation: Any = None
    logger: Any = None
    paths: Any = None


@dataclass
class TrainConf(RunKeys):
    task_name: str = "train"
    float32_matmul_precision: str = "high"
    ckpt_path: str | None = None
    export: bool = True
    inference: bool = False
    # what `train` returns to a sweeper: a metric name, a list of them (one per objective), or null
    optimized_metric: Any = None
    prune: Any = None
    quantize: Any = None
    callbacks: Any = None
    trainer: Any = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(node.float32_matmul_precision in MATMUL_PRECISIONS, "float32_matmul_precision",
                node.float32_matmul_precision, f"must be one of {', '.join(MATMUL_PRECISIONS)}")
        model_type = OmegaConf.get_type(node.model)
        if isinstance(model_type, type) and issubclass(model_type, BaselineConf):
            raise ConfigError(f"model={node.model._target_} is an extractive baseline: score it with "
                              "`python -m flavorfusion.evaluate`, it has nothing to train")
        trainer = node.trainer
        if str(trainer.precision) in ("16-mixed", "16") and node.model.optimizer.get("fused") \
                and trainer.gradient_clip_val:
            raise ConfigError("model.optimizer.fused=true cannot be combined with gradient clipping under "
                              f"trainer.precision={trainer.precision} (the GradScaler unscales inside the fused "
                              "step): set model.optimizer.fused=false, or use bf16-mixed")
        if node.data.streaming:
            require(trainer.max_steps > 0, "trainer.max_steps", trainer.max_steps,
                    "must be set (> 0) with data.streaming=true: a stream has no length to count epochs by")


@dataclass
class LatencyConf(Schema):
    runs: int = 5
    new_tokens: int = 32
    threads: int | None = None  # torch threads; null leaves torch's default

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        for name in ("runs", "new_tokens"):
            require(node[name] > 0, f"{key}.{name}", node[name], "must be a positive integer")
        require(node.threads is None or node.threads > 0, f"{key}.threads", node.threads,
                "must be a positive integer or null")


@dataclass
class EvaluationKeys(Schema):
    """evaluate's own keys (also in the DVC pipeline's params, which evaluate reads)."""

    split: str = "validation"
    models: list[str] = field(default_factory=list)  # model sources scored beside `model`
    batch_size: int = 4
    latency: LatencyConf = field(default_factory=LatencyConf)
    sparsity_suffixes: list[str] | None = None
    zip: bool = True
    output_dir: str = "${paths.output_dir}"
    baselines: dict[str, Any] = field(default_factory=dict)
    contrast: Any = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        from flavorfusion.config.model import ModelSource

        super().check(node, key)
        require(node.split in SPLITS, "split", node.split, f"must be one of {', '.join(SPLITS)}")
        require(node.batch_size > 0, "batch_size", node.batch_size, "must be a positive integer")
        for i, source in enumerate(node.models):
            ModelSource.parse(source, f"models[{i}]")


@dataclass
class EvaluateConf(EvaluationKeys, RunKeys):
    task_name: str = "evaluate"


@dataclass
class PipelineConf(TrainConf, EvaluationKeys):
    """DVC's one composed config (conf/pipeline.yaml -> params.yaml): train's keys, evaluate's, and the
    command-line keys of the other stages."""

    task_name: str = "pipeline"
    prepare: dict[str, Any] = field(default_factory=dict)
    summarize: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferenceKeys(Schema):
    """Where summarize and serve run a model."""

    seed: int = 42
    device: str = "auto"  # auto: cuda when there is one (not for quantized exports), else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    data: Any = None
    model: InferenceModelConf = field(default_factory=InferenceModelConf)
    generation: Any = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        require(node.device == "auto" or str(node.device).split(":")[0] in ("cpu", "cuda", "mps"), "device",
                node.device, "must be auto, cpu, cuda, cuda:N or mps")
        require(node.dtype in DTYPES, "dtype", node.dtype, f"must be one of {', '.join(DTYPES)}")


@dataclass
class SummarizeConf(InferenceKeys):
    task_name: str = "summarize"
    output: str = MISSING  # a .parquet file (engine=beam: a directory of shards)
    batch_size: int = 16  # groups per generate call
    part_size: int = 256  # groups per part file: a killed run loses at most one part (engine=local)
    progress: bool = True
    engine: Any = None
    contrast: Any = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        super().check(node, key)
        for name in ("batch_size", "part_size"):
            require(node[name] > 0, name, node[name], "must be a positive integer")
        require(node.model.name_or_path is not None, "model.name_or_path", None, "must name the export to run")


@dataclass
class ServeConf(InferenceKeys):
    task_name: str = "serve"
    serve: ServerConf = field(default_factory=ServerConf)


@dataclass
class PrepareConf(Schema):
    task_name: str = "prepare"
    # review groups file: .parquet or .csv; engine=beam writes a directory of Parquet shards
    output: str = MISSING
    format: str = "auto"  # auto: csv for a .csv output, parquet otherwise
    progress: bool = True
    source: Any = None
    grouping: Any = None
    translate: Any = None
    engine: Any = None

    @classmethod
    def check(cls, node: DictConfig, key: str) -> None:
        require(node.format in ("auto", "csv", "parquet"), "format", node.format, "must be auto, csv or parquet")
