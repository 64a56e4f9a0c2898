"""Every config file composes, and bad values fail before anything heavy loads, naming the key."""

import pytest
import yaml
from hydra import compose, initialize_config_dir

from flavorfusion.checks import validate_train
from flavorfusion.errors import ConfigError

from .conftest import CONF, compose_train, run_module

SPECIAL_GROUPS = {"hydra"}  # composed through every primary config's defaults


def primary_configs():
    return sorted(p.stem for p in CONF.glob("*.yaml"))


def groups_of(primary: str) -> list[str]:
    defaults = yaml.safe_load((CONF / f"{primary}.yaml").read_text()).get("defaults", [])
    groups = []
    for entry in defaults:
        if isinstance(entry, dict):
            key = next(iter(entry)).replace("optional ", "").replace("override ", "").strip()
            if key not in SPECIAL_GROUPS and (CONF / key).is_dir():
                groups.append(key)
    return groups


def options():
    for primary in primary_configs():
        yield primary, None
        for group in groups_of(primary):
            for path in sorted((CONF / group).glob("*.yaml")):
                if not path.stem.startswith("_"):  # partial files shared by the options
                    yield primary, f"{group}={path.stem}"


@pytest.mark.parametrize(("primary", "override"), list(options()), ids=lambda v: str(v))
def test_every_config_file_composes(primary, override):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(primary, overrides=[override] if override else [])
    assert cfg is not None and len(cfg) > 0


def test_train_groups_are_all_covered():
    assert {"data", "model", "prune", "quantize", "callbacks", "logger", "trainer", "paths", "experiment"} <= set(
        groups_of("train"))


def test_cfg_job_prints_prune_amount():
    result = run_module("flavorfusion.train", "model=primera", "prune.amount=0.5", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "prune:\n  amount: 0.5" in result.stdout
    assert "name_or_path: allenai/PRIMERA-multinews" in result.stdout


@pytest.mark.parametrize(("override", "key"), [
    ("data.test_ratio=1.5", "data.test_ratio"),
    ("data.test_ratio=0", "data.test_ratio"),
    ("data.max_docs_per_review=30", "data.max_docs_per_review"),
    ("data.max_source_length=-1", "data.max_source_length"),
    ("data.max_target_length=-5", "data.max_target_length"),
    ("prune.amount=1.0", "prune.amount"),
    ("data.streaming=true", "trainer.max_steps"),
])
def test_bad_values_name_the_key(override, key, tmp_path):
    cfg = compose_train(["experiment=quickstart", override], tmp_path)
    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate_train(cfg)


def test_bad_value_is_one_line_and_exit_2(tmp_path):
    result = run_module("flavorfusion.train", "experiment=quickstart", "data.test_ratio=1.5",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: data.test_ratio=1.5 must be in (0, 1)"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model").exists()


def test_wrapped_user_error_is_still_one_line(capsys):
    from flavorfusion.errors import exit_on_user_error

    @exit_on_user_error
    def entry_point():
        try:
            raise ConfigError("model.name_or_path=/x holds no model weights")
        except ConfigError as err:  # as Hydra's instantiate wraps errors raised by a _target_
            raise RuntimeError("Error in call to target") from err

    with pytest.raises(SystemExit) as exit_info:
        entry_point()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: model.name_or_path=/x holds no model weights\n"
