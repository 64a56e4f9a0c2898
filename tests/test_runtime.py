"""The one inference runtime (flavorfusion.models.runtime): what every stage builds to generate, its weights' hash
from the export's files, and that it ships to Beam workers without its model."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from flavorfusion.config.generation import GenerationConf
from flavorfusion.config.model import ModelSource
from flavorfusion.models import runtime as runtime_module
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.runtime import InferenceRuntime, Placement, files_sha256, weights_sha256
from flavorfusion.models.tiny import build_tiny_led

DATA = {"k_top_longest": 8, "max_docs_per_review": 8, "max_source_length": 256, "max_target_length": 64, "seed": 42,
        "pad_to_multiple_of": None}


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer) -> str:
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path_factory.mktemp("export") / "model"))


def runtime_of(path: str, **generation) -> InferenceRuntime:
    return InferenceRuntime(ModelSource.parse(path, "model.name_or_path"),
                            GenerationConf(**{"max_new_tokens": 6, "min_new_tokens": 3, **generation}), DATA,
                            Placement("cpu"))


def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runtime_module, "load_pretrained", refuse)


def test_the_hash_comes_from_the_files_without_loading_and_tells_weights_apart(export, tmp_path, tokenizer,
                                                                            monkeypatch):
    copy = shutil.copytree(export, tmp_path / "copy")
    changed_model = build_tiny_led(tokenizer)
    with torch.no_grad():
        changed_model.lm_head.weight[0, 0] += 1.0  # one weight (tied to the embeddings)
    changed = save_pretrained(changed_model, tokenizer, str(tmp_path / "changed"))
    no_loading(monkeypatch)
    digest = runtime_of(export).sha256
    assert len(digest) == 64 and digest == files_sha256(export)
    assert runtime_of(str(copy)).sha256 == digest  # the same weights elsewhere
    assert runtime_of(changed).sha256 != digest


def test_a_quantized_export_is_hashed_from_its_files_too(export, tmp_path, monkeypatch):
    from flavorfusion.compression.quantization import export_quantized

    int8 = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                              "export_dir": str(tmp_path / "int8")}), export)
    no_loading(monkeypatch)
    assert runtime_of(int8).sha256 not in (None, runtime_of(export).sha256)


def test_a_tokenizer_without_doc_sep_is_hashed_as_loaded(tmp_path, monkeypatch):
    """Loading adds `<doc-sep>` and grows the embeddings: the files are not what runs, so the loaded weights are
    hashed."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel()
    raw.train_from_iterator(["tasty food and slow service"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    plain = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                    pad_token="<pad>", mask_token="<mask>")
    model = build_tiny_led(plain)
    path = save_pretrained(model, plain, str(tmp_path / "no-doc-sep"))
    runtime = runtime_of(path)
    assert runtime.sha256 == weights_sha256(runtime.model) != files_sha256(path)


def test_the_runtime_ships_without_its_model_and_loads_again(export):
    runtime = runtime_of(export).load()
    summaries = runtime.generate(runtime.encode([_group("a")]))
    shipped = pickle.loads(pickle.dumps(runtime))
    assert shipped.model is None and shipped.sha256 == runtime.sha256
    assert shipped.generate(shipped.encode([_group("a")])) == summaries
    in_memory = InferenceRuntime.from_model(runtime.model, runtime.tokenizer, runtime.generation, DATA, "tiny")
    with pytest.raises(TypeError, match="cannot be shipped"):
        pickle.dumps(in_memory)


def test_generation_beyond_the_decoder_positions_is_capped_once(export, caplog):
    runtime = runtime_of(export, max_new_tokens=10_000, min_new_tokens=3).load()
    assert runtime.generation.max_new_tokens == 10_000  # as asked for: the provenance records it
    assert runtime._generation.max_new_tokens == runtime.max_new_tokens
    assert len(runtime.generate_ids(runtime.encode([_group("a")]))[0]) <= runtime.max_new_tokens + 1


def test_the_beam_driver_hashes_without_loading(export, tmp_path, monkeypatch):
    pytest.importorskip("apache_beam")
    from hydra import compose, initialize_config_dir

    from flavorfusion.data.record import ReviewGroup, to_table
    from flavorfusion.data.writer import open_writer
    from flavorfusion.runs import instantiate_node
    from flavorfusion.summarization import SummarizeJob

    from .conftest import CONF

    path = tmp_path / "groups.parquet"
    with open_writer(str(path), "parquet") as writer:
        writer.write(to_table([ReviewGroup("g", ["Tasty food.", "Slow service."])]))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("summarize", overrides=[f"model.name_or_path={export}", f"data.path={path}", "engine=beam",
                                              f"output={tmp_path / 'out'}"])
    no_loading(monkeypatch)
    settings = SummarizeJob(cfg, instantiate_node(cfg, "engine")).worker_settings()
    assert settings.provenance["model_sha256"] == files_sha256(export) and settings.runtime.model is None
    assert settings.buckets[-1] < settings.runtime.source_limit


def _group(name: str):
    from flavorfusion.data.record import ReviewGroup

    return ReviewGroup(name, ["The curry was rich and spicy.", "Slow service but kind staff."])
