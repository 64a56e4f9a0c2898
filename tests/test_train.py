"""Training runs on CPU with the tiny LED: export, resume, column mappings, bad data, W&B offline."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from flavorfusion.data.encoding import DOC_SEP, PrimeraCollator, encode_documents
from flavorfusion.errors import DataError
from flavorfusion.resources import resource_path
from flavorfusion.training import train

from .conftest import FAST, compose_train, run_module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train(compose_train(FAST, out))


def test_fast_run_exports_a_loadable_model(trained):
    out, result = trained
    export = out / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "flavorfusion.yaml"):
        assert (export / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val/rouge1", "val/rouge2", "val/rougeL", "val/rougeLsum", "val/gen_len"} <= set(metrics)
    assert 0 <= metrics["val/rouge1"] <= 100
    assert (out / "checkpoints" / "last.ckpt").is_file()

    tokenizer = AutoTokenizer.from_pretrained(export)
    model = AutoModelForSeq2SeqLM.from_pretrained(export)
    assert DOC_SEP in tokenizer.get_vocab()
    collate = PrimeraCollator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(DOC_SEP), 32)
    batch = collate([{"input_ids": encode_documents(tokenizer, ["great tacos", "slow service"], 128)}])
    # the export generates what the trained model generates (the same tokens, to the exact length asked)
    out_ids = model.generate(**batch, max_new_tokens=6, min_new_tokens=6)
    assert out_ids.shape[1] == 7  # decoder start + 6 new tokens
    assert torch.equal(out_ids, result.summarizer.generate_ids(batch, max_new_tokens=6, min_new_tokens=6))
    # the export holds the trained weights, not the initial ones
    assert torch.equal(model.get_input_embeddings().weight, result.summarizer.model.get_input_embeddings().weight)


def test_resume_from_last_checkpoint(trained, tmp_path):
    out, first = trained
    steps = first.trainer.global_step
    cfg = compose_train([*FAST, "trainer.max_epochs=2", f"ckpt_path={out}/checkpoints/last.ckpt", "export=false"],
                        tmp_path)
    resumed = train(cfg)
    assert resumed.trainer.global_step == 2 * steps  # one more epoch after the restored one


def test_tsv_with_review_and_summary_columns(tmp_path):
    text = Path(resource_path("quickstart_reviews.jsonl")).read_text()
    records = [json.loads(line) for line in text.splitlines()][:40]
    header = ["cat", "group_id", *[f"rev{i}" for i in range(1, 9)], "summ1", "summ2", "summ3"]
    lines = ["\t".join(header)]
    for r in records:
        reviews = (r["reviews"] + [""] * 8)[:8]
        lines.append("\t".join(["food", r["id"], *reviews, r["summary"], r["summary"].lower(), r["name"]]))
    path = tmp_path / "groups.tsv"
    path.write_text("\n".join(lines) + "\n")
    overrides = [*FAST, f"data.path={path}", "data.columns.id=group_id",
                 "data.columns.reviews=[rev1,rev2,rev3,rev4,rev5,rev6,rev7,rev8]",
                 "data.columns.summary=[summ1,summ2,summ3]", "data.test_ratio=0.3"]
    result = train(compose_train(overrides, tmp_path))
    assert "val/rouge1" in result.metrics
    references = result.datamodule.val_set[0]["summary"]
    assert len(references) == 3  # every reference is kept for evaluation


def test_missing_column_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="column 'nope' not found in .*quickstart_reviews.jsonl"):
        train(compose_train([*FAST, "data.columns.summary=nope"], tmp_path))


def test_missing_path_exits_with_the_pattern(tmp_path):
    result = run_module("flavorfusion.train", "experiment=quickstart", f"data.path={tmp_path}/none-*.csv",
                        f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: data.path: no file matches '{tmp_path}/none-*.csv'"


def test_wandb_offline_run_logs_config_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    result = train(compose_train([*FAST, "logger=wandb", "group=test-sweep"], tmp_path))
    logger = result.trainer.logger
    assert logger.experiment.settings.mode == "offline" or logger._offline
    assert logger.experiment.group == "test-sweep"
    assert logger.experiment.config["data"]["k_top_longest"] == 8
    run_dirs = list((tmp_path / "logs").rglob("offline-run-*"))
    assert run_dirs, "no offline W&B run directory"


def test_wandb_artifact_reference_downloads_and_loads(trained, monkeypatch):
    import wandb

    from flavorfusion.models.summarizer import Summarizer

    export = str(trained[0] / "model")
    requested = {}

    class FakeArtifact:
        def download(self, root):
            requested["root"] = root
            return export

    class FakeApi:
        def artifact(self, reference, type=None):
            requested["reference"], requested["type"] = reference, type
            return FakeArtifact()

    monkeypatch.setattr(wandb, "Api", FakeApi)
    summarizer = Summarizer.from_pretrained("wandb:me/FlavorFusion/model-x:latest", optimizer=torch.optim.AdamW)
    assert requested["reference"] == "me/FlavorFusion/model-x:latest" and requested["type"] == "model"
    assert summarizer.model.config.d_model == trained[1].summarizer.model.config.d_model


def test_doc_sep_added_when_tokenizer_lacks_it(tmp_path):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from flavorfusion.models.loading import load_pretrained
    from flavorfusion.models.tiny import build_tiny_led, train_tokenizer

    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=500)
    model = build_tiny_led(tokenizer)
    # the same tokenizer without its added <doc-sep>, as a plain LED tokenizer would be
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != DOC_SEP]
    stripped = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), bos_token="<s>",
                                       eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    assert DOC_SEP not in stripped.get_vocab()
    model.resize_token_embeddings(len(stripped))
    model.save_pretrained(tmp_path)
    stripped.save_pretrained(tmp_path)

    loaded, loaded_tokenizer = load_pretrained(str(tmp_path))
    assert DOC_SEP in loaded_tokenizer.get_vocab()
    assert loaded.get_input_embeddings().weight.shape[0] == len(loaded_tokenizer) == len(stripped) + 1


def test_export_dir_without_weights_names_the_key(tmp_path):
    from flavorfusion.errors import ConfigError
    from flavorfusion.models.loading import load_pretrained

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="model.name_or_path=.* holds no model weights"):
        load_pretrained(str(tmp_path))


def test_sweep_jobs_share_a_wandb_group(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, read_write

    from flavorfusion.tracking import sweep_group

    compose_train(["experiment=quickstart", f"hydra.sweep.dir={tmp_path}/2026-11-27_10-00-00"], tmp_path)
    assert sweep_group() is None  # a single run has no sweep group
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
        hydra_cfg.job.name = "train"
    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra_cfg}))
    assert sweep_group() == "train/2026-11-27_10-00-00"
