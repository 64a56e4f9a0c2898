"""`python -m flavorfusion.summarize`: one row per review group, resumable, and bad input in one line."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from flavorfusion.data.record import ReviewGroup, to_table
from flavorfusion.data.writer import open_writer
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led
from flavorfusion.resources import resource_path
from flavorfusion.summarization import parts_dir, summarize

from .conftest import CONF, ROOT, run_module

FAST = ["generation.max_new_tokens=6", "generation.min_new_tokens=3", "batch_size=8", "progress=false",
        "data.max_source_length=256"]


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer):
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path_factory.mktemp("export") / "model"))


@pytest.fixture(scope="module")
def groups_file(tmp_path_factory):
    """The shipped sample as prepare writes it (the review-group record, Parquet), plus a group without reviews."""
    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        groups = [ReviewGroup.from_row(json.loads(line)) for line in f if line.strip()]
    groups.append(ReviewGroup("no-reviews", [], business_id="b-empty"))
    path = tmp_path_factory.mktemp("groups") / "groups.parquet"
    with open_writer(str(path), "parquet") as writer:
        writer.write(to_table(groups))
    return path


def compose_summarize(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("summarize", overrides=[*FAST, *overrides])


def read_output(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_one_row_per_group_with_its_fields_model_and_settings(export, groups_file, tmp_path):
    output = tmp_path / "summaries.parquet"
    report = summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups_file}", f"output={output}"]))
    rows = read_output(output)
    assert report.generated == len(rows) == 160 and report.skipped == {"empty_reviews": 1}
    assert sorted(r["id"] for r in rows) == [f"qs-{i:03d}" for i in range(160)]
    first = next(r for r in rows if r["id"] == "qs-000")
    assert first["business_id"] == "qs-business-000" and first["group"] == "en"
    assert first["name"] == "Casa Indian Kitchen 0" and first["n_reviews"] is None  # not in the input
    assert all(len(r["summary"].split()) >= 1 for r in rows)
    assert {r["model"] for r in rows} == {export} and len({r["model_sha256"] for r in rows}) == 1
    assert json.loads(first["generation"]) == {"max_new_tokens": 6, "min_new_tokens": 3, "num_beams": 1, "cache": "auto",
                                              "batch_invariant": True}
    assert not os.path.exists(parts_dir(str(output)))

    # a rerun writes nothing new
    mtime = os.path.getmtime(output)
    again = summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups_file}", f"output={output}"]))
    assert again.generated == 0 and again.already_done == 160
    assert os.path.getmtime(output) == mtime


def test_killed_run_resumes_and_writes_every_group_once(export, groups_file, tmp_path):
    output = tmp_path / "summaries.parquet"
    args = [f"model.name_or_path={export}", f"data.path={groups_file}", f"output={output}", "part_size=16",
            f"hydra.run.dir={tmp_path}/run", *FAST, "batch_size=4"]
    process = subprocess.Popen([sys.executable, "-m", "flavorfusion.summarize", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    parts = parts_dir(str(output))
    deadline = time.monotonic() + 240
    while not (os.path.isdir(parts) and any(n.endswith(".parquet") for n in os.listdir(parts))):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no part written"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # as a preempted VM would stop
    process.wait()
    written = sum(pq.read_metadata(os.path.join(parts, n)).num_rows for n in os.listdir(parts) if n.endswith(".parquet"))
    assert 16 <= written < 160 and not output.exists()

    report = summarize(compose_summarize(args[:4]))
    rows = read_output(output)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 160  # every group exactly once
    assert report.already_done == written and report.generated == 160 - written


def test_another_model_for_an_existing_output_is_refused(export, groups_file, tmp_path, tokenizer):
    output = tmp_path / "summaries.parquet"
    summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups_file}", f"output={output}",
                                 "data.subset=8"]))
    with pytest.raises(ConfigError, match=r"output=.*written by another model or other generation settings"):
        summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups_file}", f"output={output}",
                                     "generation.num_beams=2"]))


def test_unwritable_output_fails_before_the_model_loads(groups_file, tmp_path, monkeypatch):
    from flavorfusion.models import loading

    monkeypatch.setattr(loading, "load_pretrained", lambda *a, **k: pytest.fail("model loaded"))
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match=r"^output=.*: cannot create"):
        summarize(compose_summarize([f"model.name_or_path={tmp_path}", f"data.path={groups_file}",
                                     f"output={blocked}/out/summaries.parquet"]))


def test_unknown_column_names_the_column_and_file(export, groups_file, tmp_path):
    with pytest.raises(DataError, match=r"column 'text' not found in .*groups.parquet"):
        summarize(compose_summarize([f"model.name_or_path={export}", f"data.path={groups_file}", "data.columns.reviews=text",
                                     f"output={tmp_path}/s.parquet"]))


def test_model_path_without_a_model_is_one_line_naming_the_key(groups_file, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_module("flavorfusion.summarize", f"model.name_or_path={tmp_path}/empty", f"data.path={groups_file}",
                        f"output={tmp_path}/s.parquet", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: model.name_or_path={tmp_path}/empty holds no model weights"
