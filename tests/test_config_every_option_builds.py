"""Every option of every config group is built, not only composed: callbacks, loggers and trainers on CPU (the
GPU-only trainers with the accelerator overridden, so their other keys are still checked), and the prepare and
compression groups with `hydra.utils.instantiate` where that needs no network."""

import importlib
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from flavorfusion.config import check_config
from flavorfusion.runs import instantiate_node, instantiate_nodes

from .conftest import CONF, compose_train


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_the_option_lists_are_the_files():
    # a new option file is picked up here by itself; these are the ones known when the test was written
    assert options("trainer") == ["cpu", "ddp", "default", "gpu", "l4"]
    assert options("callbacks") == ["default", "early_stopping"] and options("logger") == ["csv", "none", "wandb"]


def _train(overrides, tmp_path):
    cfg = compose_train(["experiment=quickstart", *overrides], tmp_path)
    check_config(cfg)
    return cfg


@pytest.mark.parametrize("option", options("callbacks"))
def test_every_callbacks_option_is_built(option, tmp_path):
    cfg = _train([f"callbacks={option}"], tmp_path)
    callbacks = instantiate_nodes(cfg.callbacks, "callbacks")
    by_type = {type(cb).__name__: cb for cb in callbacks}
    assert set(by_type) == {"ModelCheckpoint", "LearningRateMonitor"} | ({"EarlyStopping"} if option != "default" else set())
    checkpoint = by_type["ModelCheckpoint"]
    assert checkpoint.dirpath == str(tmp_path / "checkpoints") and checkpoint.monitor == "val/rougeL"
    assert checkpoint.mode == "max" and checkpoint.save_last is True
    if option == "early_stopping":
        stop = by_type["EarlyStopping"]
        assert (stop.monitor, stop.mode, stop.patience) == ("val/rougeL", "max", 3)
    # a Trainer takes them all
    L.Trainer(accelerator="cpu", devices=1, callbacks=callbacks, logger=False, enable_progress_bar=False)


@pytest.mark.parametrize("option", options("logger"))
def test_every_logger_option_is_built(option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    cfg = _train([f"logger={option}"], tmp_path)
    loggers = instantiate_nodes(cfg.logger, "logger")
    names = [type(logger).__name__ for logger in loggers]
    assert names == {"csv": ["CSVLogger"], "none": [], "wandb": ["WandbLogger"]}[option]
    for logger in loggers:
        assert str(Path(logger.save_dir)).startswith(str(tmp_path / "logs"))  # paths.log_dir, not the cwd
    if option == "wandb":
        logger = loggers[0]
        assert logger._project == "FlavorFusion" and logger._log_model is False
        assert logger.log_model_artifact is True
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=loggers or False, enable_progress_bar=False)
    assert len(trainer.loggers) == len(loggers)


GPU_ONLY = {"gpu", "ddp", "l4"}
# what each option sets beyond the default, read back from the built Trainer
EXPECTED = {
    "default": {"precision": "32-true", "accumulate_grad_batches": 1},
    "cpu": {"precision": "32-true", "accumulate_grad_batches": 1},
    "gpu": {"precision": "bf16-mixed", "accumulate_grad_batches": 1},
    "ddp": {"precision": "bf16-mixed", "accumulate_grad_batches": 1},
    "l4": {"precision": "bf16-mixed", "accumulate_grad_batches": 8},
}


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_option_is_built_on_cpu(option, tmp_path):
    overrides = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto"] if option in GPU_ONLY else []
    cfg = _train([f"trainer={option}", *overrides], tmp_path)
    composed = OmegaConf.to_container(cfg.trainer)
    if option in GPU_ONLY:  # what the option asks for before the override
        raw = compose_train(["experiment=quickstart", f"trainer={option}"], tmp_path).trainer
        assert raw.accelerator == "gpu"
        assert raw.strategy == ("ddp" if option == "ddp" else "auto")
        assert raw.devices == (-1 if option == "ddp" else 1)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer, L.Trainer)
    assert trainer.precision == EXPECTED[option]["precision"]
    assert trainer.accumulate_grad_batches == EXPECTED[option]["accumulate_grad_batches"]
    assert trainer.gradient_clip_val == composed["gradient_clip_val"] == 1.0
    assert trainer.max_epochs == composed["max_epochs"] and trainer.num_sanity_val_steps == 0
    assert trainer.default_root_dir == str(tmp_path)
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"
    if option == "l4":  # the option also sets the model and data for one L4
        assert cfg.model.attention == "flex" and cfg.data.max_source_length == 4096 and cfg.data.batch_size == 1


@pytest.mark.parametrize("option", options("prune"))
def test_every_prune_option_is_built(option, tmp_path):
    cfg = _train([f"prune={option}"], tmp_path)
    if option == "none":
        assert "_target_" not in cfg.prune and cfg.prune.amount == 0
        return
    callback = instantiate(cfg.prune)
    assert type(callback).__name__ == cfg.prune._target_.rsplit(".", 1)[-1]
    assert isinstance(callback, L.Callback)


@pytest.mark.parametrize("option", options("quantize"))
def test_every_quantize_option_has_its_backend(option, tmp_path):
    from flavorfusion.compression.quantization import check_backend

    cfg = _train([f"quantize={option}"], tmp_path)
    assert cfg.quantize.method == option
    check_backend(cfg.quantize.method)  # the package the method needs is installed (dev extras)
    if option != "none":
        assert cfg.quantize.export_dir == str(tmp_path / f"model_{option}")


def _prepare(overrides, tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"output={tmp_path}/groups.parquet", "source.reviews=r.json.gz",
                                            "source.meta=m.json.gz", *overrides])
    check_config(cfg)
    return cfg


@pytest.mark.parametrize("group", ["grouping", "translate", "engine"])
def test_every_prepare_option_is_instantiated(group, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for option in options(group):
        overrides = [f"{group}={option}"]
        if group == "translate" and option == "google":  # no network: a dry run (counts characters, sends nothing)
            overrides += ["translate.dry_run=true", f"translate.cache_path={tmp_path}/t.sqlite",
                          "translate.project_id=my-project"]
        if group == "engine" and option == "dataflow_l4":  # Dataflow's required options; nothing is submitted
            overrides += ["engine.dataflow.project=my-project", "engine.dataflow.temp_location=gs://my-bucket/tmp",
                          "engine.dataflow.sdk_container_image=my-image"]
        cfg = _prepare(overrides, tmp_path)
        built = instantiate_node(cfg, group)
        assert isinstance(built, get_class(cfg[group]._target_)), (group, option)


@pytest.mark.parametrize("option", options("source"))
def test_every_source_option_is_instantiated(option, tmp_path):
    extra = {"google_local": [], "lsars": ["source.path=items.jsonl"]}[option]
    cfg = _prepare([f"source={option}", *extra], tmp_path) if option == "google_local" else None
    if cfg is None:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("prepare", overrides=[f"output={tmp_path}/g.parquet", f"source={option}", *extra])
        check_config(cfg)
    source = instantiate_node(cfg, "source")
    assert isinstance(source, get_class(cfg.source._target_))


@pytest.mark.parametrize("option", ["centroid_review", "lexrank", "random_review"])
def test_every_baseline_model_option_is_instantiated(option, tmp_path):
    from flavorfusion.evaluation import _instantiate_baseline

    from .test_evaluate import FAST_EVAL, compose_evaluate

    cfg = compose_evaluate([f"model={option}", *FAST_EVAL], tmp_path)
    check_config(cfg)
    baseline = _instantiate_baseline(cfg.model)
    assert type(baseline).__name__ == cfg.model._target_.rsplit(".", 1)[-1]
    assert isinstance(baseline.summarize(["Great tacos. Slow service.", "Fresh salsa."], "g1"), str)


def test_every_module_named_by_a_target_imports():
    """Every `_target_` in conf/ names an importable object (a typo there fails only when that option runs)."""
    import yaml

    targets = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                targets.add(node["_target_"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CONF.rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    assert len(targets) > 20
    for target in sorted(targets):
        module, _, name = target.rpartition(".")
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError:  # a classmethod: module.Class.method
            module, _, cls = module.rpartition(".")
            obj = getattr(importlib.import_module(module), cls)
        assert callable(getattr(obj, name)), target
