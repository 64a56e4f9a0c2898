"""Runs start without torchao's import noise: transformers imports torchao whenever it is installed, whose CUDA
kernels cannot load on a CPU-only torch ("Failed to load .../torchao/_C_mxfp8...so") and whose enums trip a torch
deprecation ("... is an Enum subclass ... register_constant() ... deprecated"). `flavorfusion/__init__.py` drops
exactly those lines; everything else torchao or torch logs still shows."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

NOISE = ("Failed to load", "is an Enum subclass", "DeprecationWarning")

# what a training run does before and after fitting: import the entry point, build a model, export and reload it
FP_ROUND_TRIP = """
import logging, sys, tempfile
import flavorfusion.train  # noqa: F401
from flavorfusion.models.loading import load_pretrained, save_pretrained
from flavorfusion.models.tiny import build_tiny_led, train_tokenizer
from flavorfusion.resources import resource_path

tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), 500)
directory = save_pretrained(build_tiny_led(tokenizer), tokenizer, tempfile.mkdtemp() + "/model")
model, tokenizer = load_pretrained(directory)
assert model.config.d_model == 64, model.config
logging.getLogger("torchao").warning("Failed to load something else")  # not one of the dropped lines
"""

INT8_EXPORT = """
from omegaconf import OmegaConf
from flavorfusion.compression.quantization import export_quantized

quantize = OmegaConf.create({"method": "int8_dynamic", "exclude": [], "export_dir": tempfile.mkdtemp() + "/q"})
model, _ = load_pretrained(export_quantized(quantize, directory))
assert type(model.get_submodule("lm_head")).__name__ == "Int8DynamicLinear"
print("int8 export reloaded")
"""


HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
SEPARATOR = "--- int8_dynamic export ---"


@pytest.fixture(scope="module")
def run():
    """(stdout, stderr) of one fresh process: the fp round trip, then (with torchao) an int8_dynamic export."""
    code = FP_ROUND_TRIP + (f"print({SEPARATOR!r}, file=sys.stderr, flush=True)\n" + INT8_EXPORT if HAS_TORCHAO else "")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(n in line for n in NOISE) and "something else" not in line]


def test_model_round_trip_prints_no_torchao_noise(run):
    stdout, stderr = run
    fp_stderr = stderr.split(SEPARATOR)[0]
    assert _noise(fp_stderr) == [], fp_stderr
    # the filter is narrow: another torchao warning still reaches stderr
    assert "Failed to load something else" in fp_stderr


@pytest.mark.skipif(not HAS_TORCHAO, reason="needs torchao (flavorfusion[compress])")
def test_int8_export_still_works_and_prints_no_torchao_noise(run):
    stdout, stderr = run
    assert "int8 export reloaded" in stdout
    assert _noise(stderr) == [], stderr
