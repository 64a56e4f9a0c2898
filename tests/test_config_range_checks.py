"""The range checks at their boundaries: the last value accepted and the first refused, naming the key
(flavorfusion/config/*.py `check`), and the start-up checks of flavorfusion/checks.py that look at files."""

import tempfile
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flavorfusion.checks import (
    check_model_limits,
    check_no_missing_values,
    check_summarize_output,
    prepare_output,
    validate,
    validate_serve,
)
from flavorfusion.config import check_config
from flavorfusion.errors import ConfigError

from .conftest import CONF, compose_train

QUICKSTART = ["experiment=quickstart"]
SERVE = ["model.name_or_path=/some/export"]


_BASES: dict = {}


def composed(primary: str, overrides: list[str]):
    """The stage's config with `overrides`; `key=value` ones past the base are set on a copy of the base composed
    once (composing per case costs a second each on a loaded machine)."""
    base = tuple(o for o in overrides if "=" not in o or o.split("=", 1)[0] in ("experiment", "model") or
                 o.startswith("model."))
    if (primary, base) not in _BASES:
        if primary == "train":
            _BASES[primary, base] = compose_train(list(base), Path(tempfile.gettempdir()) / "unused-run-dir")
        else:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                _BASES[primary, base] = compose(primary, overrides=list(base))
    cfg = _BASES[primary, base].copy()
    for override in overrides:
        if override not in base:
            key, value = override.lstrip("+").split("=", 1)
            OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=override.startswith("+"))
    return cfg


# (primary, base overrides, accepted at the boundary, refused just past it, the key named)
BOUNDARIES = [
    ("train", QUICKSTART, "data.test_ratio=0.999", "data.test_ratio=1.0", "data.test_ratio"),
    ("train", QUICKSTART, "data.test_ratio=0.001", "data.test_ratio=0.0", "data.test_ratio"),
    ("train", QUICKSTART, "data.max_docs_per_review=8", "data.max_docs_per_review=9", "data.max_docs_per_review"),
    ("train", QUICKSTART, "data.batch_tokens=512", "data.batch_tokens=511", "data.batch_tokens"),
    ("train", QUICKSTART, "generation.min_new_tokens=64", "generation.min_new_tokens=65", "generation.min_new_tokens"),
    ("train", QUICKSTART, "generation.num_beams=1", "generation.num_beams=0", "generation.num_beams"),
    ("train", QUICKSTART, "trainer.max_steps=1", "trainer.max_steps=0", "trainer.max_steps"),
    ("train", QUICKSTART, "trainer.max_steps=-1", "trainer.max_steps=-2", "trainer.max_steps"),
    ("train", QUICKSTART, "trainer.gradient_clip_val=0", "trainer.gradient_clip_val=-0.5", "trainer.gradient_clip_val"),
    ("serve", SERVE, "serve.port=65535", "serve.port=65536", "serve.port"),
    ("serve", SERVE, "serve.port=1", "serve.port=0", "serve.port"),
    ("serve", SERVE, "serve.batch_timeout_ms=0", "serve.batch_timeout_ms=-1", "serve.batch_timeout_ms"),
    ("serve", SERVE, "+serve.variants.int8=/x", "+serve.variants.trained=/x", "serve.variants.trained"),
]


@pytest.mark.parametrize(("primary", "base", "accepted", "refused", "key"), BOUNDARIES,
                         ids=[b[3] for b in BOUNDARIES])
def test_range_check_boundary(primary, base, accepted, refused, key):
    check_config(composed(primary, [*base, accepted]))
    with pytest.raises(ConfigError, match=rf"^{key}="):
        check_config(composed(primary, [*base, refused]))


def test_generation_max_new_tokens_bounds_min_new_tokens():
    check_config(composed("train", [*QUICKSTART, "generation.max_new_tokens=5", "generation.min_new_tokens=5"]))
    with pytest.raises(ConfigError, match=r"^generation.min_new_tokens=6 must be in \[0, generation.max_new_tokens=5\]"):
        check_config(composed("train", [*QUICKSTART, "generation.max_new_tokens=5", "generation.min_new_tokens=6"]))


def test_missing_values_are_named():
    check_no_missing_values(composed("train", QUICKSTART))
    with pytest.raises(ConfigError, match=r"^data.path: missing value"):
        check_no_missing_values(composed("train", ["model=primera"]))


def test_model_limits_boundary():
    data = OmegaConf.create({"max_source_length": 1024, "max_target_length": 256})
    config = type("Config", (), {"max_encoder_position_embeddings": 1030, "max_decoder_position_embeddings": 256,
                                 "attention_window": [256, 512]})()
    check_model_limits(data, config)  # 1030 positions, window 512: 1024 source tokens at most
    with pytest.raises(ConfigError, match=r"^data.max_source_length=1025 is more than the model takes \(1024"):
        check_model_limits(OmegaConf.merge(data, {"max_source_length": 1025}), config)
    with pytest.raises(ConfigError, match=r"^data.max_target_length=257 is more than the model takes \(256"):
        check_model_limits(OmegaConf.merge(data, {"max_target_length": 257}), config)


def test_summarize_output_must_be_a_writable_file(tmp_path):
    base = ["model.name_or_path=/some/export", "data.path=groups.parquet"]
    validate(composed("summarize", [*base, f"output={tmp_path}/s.parquet"]))
    check_summarize_output(composed("summarize", [*base, f"output={tmp_path}/s.parquet"]), directory=False)
    with pytest.raises(ConfigError, match=rf"^output={tmp_path} is a directory"):
        check_summarize_output(composed("summarize", [*base, f"output={tmp_path}"]), directory=False)
    # an engine writing shards takes a directory, and whole files: no subset
    check_summarize_output(composed("summarize", [*base, f"output={tmp_path}", "engine=beam"]), directory=True)
    with pytest.raises(ConfigError, match=r"^data.subset=5 is engine=local only"):
        check_summarize_output(composed("summarize", [*base, f"output={tmp_path}", "engine=beam", "data.subset=5"]),
                               directory=True)


def test_serve_summaries_must_exist(tmp_path):
    (tmp_path / "s.parquet").write_bytes(b"")
    validate_serve(composed("serve", [*SERVE, f"serve.summaries={tmp_path}/s.parquet"]))
    validate_serve(composed("serve", [*SERVE, "serve.summaries=gs://bucket/s.parquet"]))  # checked when read
    with pytest.raises(ConfigError, match=rf"^serve.summaries={tmp_path}/none.parquet does not exist"):
        validate_serve(composed("serve", [*SERVE, f"serve.summaries={tmp_path}/none.parquet"]))


def test_prepare_output_is_a_file_or_a_shard_directory(tmp_path):
    cfg = OmegaConf.create({"output": str(tmp_path)})
    with pytest.raises(ConfigError, match=rf"^output={tmp_path} is a directory"):
        prepare_output(cfg)
    assert prepare_output(cfg, directory=True) == str(tmp_path)
    assert prepare_output(OmegaConf.create({"output": f"{tmp_path}/shards/"}), directory=True) == f"{tmp_path}/shards"
    assert prepare_output(OmegaConf.create({"output": f"{tmp_path}/g.parquet"})) == f"{tmp_path}/g.parquet"
    with pytest.raises(ConfigError, match=r"^missing value for output"):
        prepare_output(OmegaConf.create({"output": "???"}))
