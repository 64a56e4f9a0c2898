"""Shared fixtures. Library caches (HF, datasets, W&B) go to a temporary directory, never $HOME."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CACHE = tempfile.mkdtemp(prefix="flavorfusion-tests-")
for key, sub in (("HF_HOME", "hf"), ("HF_DATASETS_CACHE", "datasets"), ("WANDB_DIR", "wandb"),
                 ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_CONFIG_DIR", "wandb-config")):
    os.environ[key] = os.path.join(_CACHE, sub)
os.environ["WANDB_MODE"] = "offline"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("WANDB_API_KEY", None)

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import flavorfusion  # noqa: E402,F401  (registers the ff.resource resolver)

pytest_plugins = ["tests.ci_plugin"]  # CI=true: a missing dev dependency fails instead of skipping

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(scope="session")
def tokenizer():
    from flavorfusion.models.tiny import train_tokenizer
    from flavorfusion.resources import resource_path

    return train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=1000)


def compose_train(overrides: list[str], tmp_path: Path | None = None):
    """The composed train config, with hydra's runtime values filled in as in a real run."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m module args...` in a fresh process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


# fast settings for training runs in tests: a few steps on a small subset
FAST = ["experiment=quickstart", "data.subset=48", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "data.batch_size=4", "generation.max_new_tokens=8",
        "generation.min_new_tokens=2", "inference=false"]
