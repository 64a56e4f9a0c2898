"""The config contract, tried as a user would: every bad value, wrong type, unknown key or inconsistent pair on the
command line of any stage (and of the Vertex launcher) ends with exit status 2 and one line naming the key."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from .conftest import ROOT, run_module

QUICKSTART = ["experiment=quickstart"]
PREPARE = ["source.reviews=reviews.json", "source.meta=meta.json", "output=groups.parquet"]
EVALUATE = ["model=tiny", "data=quickstart", "generation=quickstart", "split=all"]
SUMMARIZE = ["model.name_or_path=/nonexistent/model", "data.path=groups.parquet", "output=summaries.parquet"]
SERVE = ["model.name_or_path=/nonexistent/model"]
VERTEX = ["-m", "hydra/launcher=vertex", "hydra.launcher.project=p", "hydra.launcher.image_uri=IMG",
          "hydra.launcher.staging_bucket=gs://bucket", "hydra.launcher.dry_run=true"]

# (stage, overrides, the key the error line must name); kinds: type, unknown key, range, inconsistent pair, option
BAD_OVERRIDES = [
    ("train", [*QUICKSTART, "trainer.max_epochs=abc"], "trainer.max_epochs"),
    ("train", [*QUICKSTART, "data.batch_size=many"], "data.batch_size"),
    ("train", [*QUICKSTART, "seed=x"], "seed"),
    ("train", [*QUICKSTART, "trainer.max_epoch=3"], "trainer.max_epoch"),
    ("train", [*QUICKSTART, "generation.beams=2"], "generation.beams"),
    ("train", [*QUICKSTART, "data=nope"], "data/nope"),
    ("train", [*QUICKSTART, "prune.amount=1.5"], "prune.amount"),
    ("train", [*QUICKSTART, "prune=l1_unstructured", "prune.schedule=sometimes"], "prune.schedule"),
    ("train", [*QUICKSTART, "quantize.method=int3"], "quantize.method"),
    ("train", [*QUICKSTART, "data.k_top_longest=-1"], "data.k_top_longest"),
    ("train", [*QUICKSTART, "data.test_ratio=0"], "data.test_ratio"),
    ("train", [*QUICKSTART, "data.max_docs_per_review=9"], "data.max_docs_per_review"),
    ("train", [*QUICKSTART, "model.attention=foo"], "model.attention"),
    ("train", [*QUICKSTART, "model.optimizer.lr=-1"], "model.optimizer.lr"),
    ("train", [*QUICKSTART, "model.optimizer.lr=fast"], "model.optimizer.lr"),
    ("train", [*QUICKSTART, "model.optimizer.weight_decay=-0.1"], "model.optimizer.weight_decay"),
    ("train", [*QUICKSTART, "model.optimizer.momentum=0.9"], "model.optimizer.momentum"),
    ("train", [*QUICKSTART, "model.scheduler.num_warmup_steps=soon"], "model.scheduler.num_warmup_steps"),
    ("train", [*QUICKSTART, "model.scheduler.num_warmup_steps=-5"], "model.scheduler.num_warmup_steps"),
    ("train", [*QUICKSTART, "model.scheduler.name=sawtooth"], "model.scheduler.name"),
    ("train", [*QUICKSTART, "callbacks.model_checkpoint.save_top_k=many"], "callbacks.model_checkpoint"),
    ("train", [*QUICKSTART, "generation.num_beams=0"], "generation.num_beams"),
    ("train", [*QUICKSTART, "generation.min_new_tokens=500"], "generation.min_new_tokens"),
    ("train", [*QUICKSTART, "trainer.precision=8"], "trainer.precision"),
    ("train", [*QUICKSTART, "trainer.limit_val_batches=-1"], "trainer.limit_val_batches"),
    ("train", [*QUICKSTART, "trainer.gradient_clip_algorithm=l3"], "trainer.gradient_clip_algorithm"),
    ("train", [*QUICKSTART, "generation.cache=warm"], "generation.cache"),
    ("train", [*QUICKSTART, "float32_matmul_precision=ultra"], "float32_matmul_precision"),
    ("train", [*QUICKSTART, "metrics.multi_reference=median"], "metrics.multi_reference"),
    ("train", [*QUICKSTART, "data.streaming=true"], "trainer.max_steps"),
    ("train", [*QUICKSTART, "data.max_source_length=4096"], "data.max_source_length"),
    ("train", ["model=primera", "model.name_or_path=wandb:nope", "data.path=x.csv"], "model.name_or_path"),
    ("prepare", [*PREPARE, "source.min_chars=abc"], "source.min_chars"),
    ("prepare", [*PREPARE, "source.min_chars=50", "source.max_chars=10"], "source.min_chars"),
    ("prepare", [*PREPARE, "source.color=red"], "source.color"),
    ("prepare", [*PREPARE, "engine=beam", "engine.runner=DirectRunner"], "engine.runner"),
    ("prepare", [*PREPARE, "grouping=surname", "grouping.min_probability=1.5"], "grouping.min_probability"),
    ("prepare", [*PREPARE, "grouping.min_group_size=0"], "grouping.min_group_size"),
    ("prepare", [*PREPARE, "translate=google", "translate.batch_size=0"], "translate.batch_size"),
    ("prepare", ["source=lsars", "source.path=items.jsonl", "output=g.parquet", "source.stop_line=0"],
     "source.stop_line"),
    ("prepare", [*PREPARE, "format=xml"], "format"),
    ("evaluate", [*EVALUATE, "split=test"], "split"),
    ("evaluate", [*EVALUATE, "latency.runs=0"], "latency.runs"),
    ("evaluate", [*EVALUATE, "models=[wandb:not-an-artifact]"], "models[0]"),
    ("evaluate", [*EVALUATE, "batch_size=abc"], "batch_size"),
    ("summarize", [*SUMMARIZE, "batch_size=0"], "batch_size"),
    ("summarize", [*SUMMARIZE, "dtype=float8"], "dtype"),
    ("summarize", [*SUMMARIZE, "model.attention=sdpa"], "model.attention"),
    ("summarize", [*SUMMARIZE, "generation.max_new_tokens=0"], "generation.max_new_tokens"),
    ("summarize", [*SUMMARIZE, "model.path=/nonexistent/model"], "model.path"),
    ("summarize", [*SUMMARIZE, "engine=nope"], "engine/nope"),
    ("summarize", [*SUMMARIZE, "engine=beam", "engine.num_shards=-1"], "engine.num_shards"),
    ("summarize", [*SUMMARIZE, "engine=beam", "engine.dry_run=true"], "engine.dry_run"),
    ("summarize", [*SUMMARIZE, "engine=beam", "engine.shards=2"], "engine.shards"),
    ("summarize", [*SUMMARIZE, "engine=beam", "data.subset=5"], "data.subset"),
    ("summarize", [*SUMMARIZE, "engine=dataflow_l4"], "engine.dataflow.project"),
    ("summarize", [*SUMMARIZE, "engine=dataflow_l4", "engine.dataflow.project=p", "engine.dataflow.temp_location=gs://b/t",
                   "engine.dataflow.sdk_container_image=i", "+engine.dataflow.worker_acelerator=x"],
     "engine.dataflow.worker_acelerator"),
    ("serve", [*SERVE, "serve.port=70000"], "serve.port"),
    ("serve", [*SERVE, "serve.variants.trained=/other"], "serve.variants.trained"),
    ("serve", [*SERVE, "serve.max_batch_size=abc"], "serve.max_batch_size"),
    ("serve", [*SERVE, "serve.workers=4"], "serve.workers"),
    ("serve", [*SERVE, "serve.keep_alive_s=0"], "serve.keep_alive_s"),
    ("serve", [*SERVE, "serve.api_key_env=FF_KEY", "serve.api_key_secret=projects/p/secrets/s/versions/1"],
     "serve.api_key_secret"),
    ("prepare", [*PREPARE, "grouping=language", "grouping.min_margin=2"], "grouping.min_margin"),
    ("summarize", [*SUMMARIZE, "contrast.enabled=maybe"], "contrast.enabled"),
    ("summarize", [*SUMMARIZE, "contrast.min_z=-1"], "contrast.min_z"),
    ("summarize", [*SUMMARIZE, "contrast.max_terms=0"], "contrast.max_terms"),
    ("summarize", [*SUMMARIZE, "contrast.max_ngram=4"], "contrast.max_ngram"),
    ("summarize", [*SUMMARIZE, "contrast.min_reviews=0"], "contrast.min_reviews"),
    ("summarize", [*SUMMARIZE, "contrast.prior_weight=0"], "contrast.prior_weight"),
    ("summarize", [*SUMMARIZE, "contrast.min_background_reviews=-3"], "contrast.min_background_reviews"),
    ("summarize", [*SUMMARIZE, "contrast.quotes_per_term=0"], "contrast.quotes_per_term"),
    ("summarize", [*SUMMARIZE, "contrast.quote_chars=10"], "contrast.quote_chars"),
    ("summarize", [*SUMMARIZE, "contrast.stem=true"], "contrast.stem"),
    ("summarize", [*SUMMARIZE, "generation.batch_invariant=sometimes"], "generation.batch_invariant"),
    ("evaluate", [*EVALUATE, "contrast.min_z=x"], "contrast.min_z"),
    ("evaluate", [*EVALUATE, "generation.batch_invariant=sometimes"], "generation.batch_invariant"),
    ("serve", [*SERVE, "serve.max_connections=0"], "serve.max_connections"),
    ("serve", [*SERVE, "serve.max_header_bytes=abc"], "serve.max_header_bytes"),
    ("serve", [*SERVE, "+serve.max_conections=9"], "serve.max_conections"),
    ("train", [*QUICKSTART, "-m", "hydra/launcher=vertex_local", "hydra.launcher.poll_interval=abc"],
     "hydra.launcher.poll_interval"),
    ("train", [*QUICKSTART, *VERTEX, "hydra.launcher.accelerator_count=-1"], "hydra.launcher.accelerator_count"),
    ("train", [*QUICKSTART, *VERTEX, "hydra.launcher.timeout=soon"], "hydra.launcher.timeout"),
    ("train", [*QUICKSTART, *VERTEX, "hydra.launcher.spot=maybe"], "hydra.launcher.spot"),
]


def run_in_one_process(cases: list[tuple[str, list[str]]], tmp_path) -> list[tuple[int, str, str]]:
    """Each (stage, args) as `python -m flavorfusion.<stage> args...`, all in one fresh process (tests/cli_runner.py)
    run from `tmp_path`: (exit status, stderr, stdout) of each."""
    def argv(i: int, args: list[str]) -> list[str]:
        flags = [a for a in args if a.startswith("-") and "=" not in a and a not in ("job",)]
        rest = [a for a in args if a not in flags]
        return [*flags, *rest, f"hydra.run.dir={tmp_path}/run{i}", f"hydra.sweep.dir={tmp_path}/sweep{i}"]

    payload = json.dumps([[stage, argv(i, args)] for i, (stage, args) in enumerate(cases)])
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "cli_runner.py")], input=payload, capture_output=True,
                          text=True, cwd=tmp_path, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return [tuple(r) for r in json.loads(done.stdout)]


@pytest.fixture(scope="module")
def bad_override_results(tmp_path_factory):
    return run_in_one_process([(stage, args) for stage, args, _ in BAD_OVERRIDES], tmp_path_factory.mktemp("bad"))


def test_the_table_covers_every_stage_and_the_launcher():
    assert len(BAD_OVERRIDES) >= 30
    assert {stage for stage, _, _ in BAD_OVERRIDES} == {"train", "prepare", "evaluate", "summarize", "serve"}
    assert any(key.startswith("hydra.launcher.") for _, _, key in BAD_OVERRIDES)


@pytest.mark.parametrize(("stage", "overrides", "key"), BAD_OVERRIDES,
                         ids=[f"{stage}:{overrides[-1]}" for stage, overrides, _ in BAD_OVERRIDES])
def test_a_bad_override_exits_2_with_one_line_naming_its_key(stage, overrides, key, bad_override_results):
    code, err, _ = bad_override_results[BAD_OVERRIDES.index((stage, overrides, key))]
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert key in lines[0], lines[0]


def test_a_wrong_type_names_the_key_and_the_expected_type_from_the_command_line(tmp_path):
    result = run_module("flavorfusion.train", "experiment=quickstart", "trainer.max_epochs=abc",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: trainer.max_epochs: Value 'abc' of type 'str' could not be converted "
                                      "to Integer (from trainer.max_epochs=abc)")


MARKDOWN = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
            *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "experiments").glob("**/*.md"))]


def readme_commands() -> list[list[str]]:
    """Every `python -m flavorfusion.<stage> ...` command of every Markdown file of the repository (continuation
    lines joined), as arguments after the file's name; `...` placeholders become `x`. `flavorfusion.study DIR`
    reads a sweep directory, it composes no config."""
    commands = []
    for name in MARKDOWN:
        lines = (ROOT / name).read_text().replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if line.startswith("python -m flavorfusion.") and not line.startswith("python -m flavorfusion.study"):
                words = shlex.split(line.split("  #")[0])
                words = [w.replace("...", "x") for w in words if w != "..."]
                commands.append([name, *words[2:]])
    return commands


def first_sweep_value(override: str) -> str:
    key, _, value = override.partition("=")
    return f"{key}={value.split(',')[0]}" if "," in value and not value.startswith(("[", "{", "'")) else override


def documented_launcher_config(directory) -> str:
    """docs/vertex.md's own launcher config (`conf/hydra/launcher/vertex_mine.yaml`), written where a user would put
    it, as a config search path: the commands that select it compose with it."""
    text = (ROOT / "docs" / "vertex.md").read_text()
    block = text.split("`conf/hydra/launcher/vertex_mine.yaml`:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    path = directory / "hydra" / "launcher" / "vertex_mine.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(block)
    return f"hydra.searchpath=[file://{directory}]"


@pytest.fixture(scope="module")
def readme_results(tmp_path_factory):
    cases = []
    search_path = documented_launcher_config(tmp_path_factory.mktemp("user_conf"))
    for _, *command in readme_commands():
        args = [a for a in command[1:] if a not in ("--cfg", "job")]
        if "hydra/launcher=vertex_mine" in args:
            args.append(search_path)
        if "-m" in args:  # a sweep: the config of its first job (Hydra's --cfg takes no -m)
            args = [first_sweep_value(a) for a in args if a != "-m"]
        cases.append((command[0].removeprefix("flavorfusion."), ["--cfg", "job", *args]))
    return run_in_one_process(cases, tmp_path_factory.mktemp("readme"))


@pytest.mark.parametrize("index", range(len(readme_commands())), ids=[" ".join(c)[:80] for c in readme_commands()])
def test_every_readme_command_composes_with_cfg_job(index, readme_results):
    code, err, printed = readme_results[index]
    assert code == 0, err[-2000:]
    assert "task_name:" in printed or "output:" in printed, printed[-500:]


def test_the_readme_has_commands_for_every_stage():
    assert {c[1] for c in readme_commands() if c[0] == "README.md"} >= {f"flavorfusion.{s}" for s in
                                                                        ("train", "prepare", "evaluate", "summarize",
                                                                         "serve")}
    assert {c[0] for c in readme_commands()} >= {"README.md", "docs/serving.md", "experiments/README.md"}
