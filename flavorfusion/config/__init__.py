"""The typed config contract: one dataclass schema per config group option and per stage root, registered in
Hydra's ConfigStore. Each YAML option starts with `defaults: [_schema_<name>, _self_]` (Hydra's schema pattern), so
a wrong type or an unknown key fails at compose time, naming the full key; `check_config` then runs each node's
range and consistency checks.

Importing this package registers the schemas (the entry points import it; `hydra_plugins.flavorfusion_schemas`
imports it when Hydra scans its plugins, so DVC's and any other compose of `conf/` sees them too).
"""

from hydra.core.config_store import ConfigStore

from flavorfusion.config import (
    contrast,
    data,
    engine,
    generation,
    grouping,
    model,
    paths,
    prune,
    quantize,
    source,
    stage,
    trainer,
    translate,
)
from flavorfusion.config.model import ModelSource
from flavorfusion.config.schema import Schema, check_config, require

# (group, name in the ConfigStore, schema); a group's YAML options name theirs in their defaults list
SCHEMAS = [
    ("data", "_schema", data.DataConf),
    ("generation", "_schema", generation.GenerationConf),
    ("contrast", "_schema", contrast.ContrastConf),
    ("model", "_schema_pretrained", model.PretrainedConf),
    ("model", "_schema_tiny", model.TinyConf),
    ("model", "_schema_random_review", model.RandomReviewConf),
    ("model", "_schema_centroid_review", model.CentroidReviewConf),
    ("model", "_schema_lexrank", model.LexRankConf),
    ("prune", "_schema_none", prune.NoPruneConf),
    ("prune", "_schema_l1_unstructured", prune.L1UnstructuredConf),
    ("prune", "_schema_structured", prune.StructuredPruneConf),
    ("quantize", "_schema_none", quantize.NoQuantizeConf),
    ("quantize", "_schema_int8_dynamic", quantize.Int8DynamicConf),
    ("quantize", "_schema_weight_only", quantize.WeightOnlyConf),
    ("trainer", "_schema", trainer.TrainerConf),
    ("paths", "_schema", paths.PathsConf),
    ("source", "_schema_google_local", source.GoogleLocalConf),
    ("source", "_schema_lsars", source.LsarsConf),
    ("grouping", "_schema_none", grouping.NoGroupingConf),
    ("grouping", "_schema_language", grouping.LanguageGroupingConf),
    ("grouping", "_schema_surname", grouping.SurnameGroupingConf),
    ("translate", "_schema_none", translate.NoTranslationConf),
    ("translate", "_schema_google", translate.GoogleTranslateConf),
    ("engine", "_schema_local", engine.LocalEngineConf),
    ("engine", "_schema_beam", engine.BeamEngineConf),
    (None, "_schema_train", stage.TrainConf),
    (None, "_schema_evaluate", stage.EvaluateConf),
    (None, "_schema_summarize", stage.SummarizeConf),
    (None, "_schema_serve", stage.ServeConf),
    (None, "_schema_prepare", stage.PrepareConf),
    (None, "_schema_pipeline", stage.PipelineConf),
]


def register() -> None:
    store = ConfigStore.instance()
    for group, name, schema in SCHEMAS:
        store.store(group=group, name=name, node=schema, provider="flavorfusion")


register()

__all__ = ["ModelSource", "Schema", "check_config", "register", "require"]
