"""The Vertex AI launcher plugin: specs, dry runs, the submit/poll engine against a fake Vertex client,
cancellation, secrets kept out of files and logs, and Hydra's own launcher test suites on `vertex_local`.

Nothing here reaches Google: every Vertex call goes through VertexJobClient, which the tests replace.
"""

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra_plugins.vertex_launcher import client as client_module
from hydra_plugins.vertex_launcher._jobs import JobFailedError
from hydra_plugins.vertex_launcher._submission import FAILED, RUNNING, SUCCEEDED, JobState, run_jobs
from hydra_plugins.vertex_launcher.client import VertexJobClient
from hydra_plugins.vertex_launcher.config import parse_timeout
from hydra_plugins.vertex_launcher.vertex import forwarded_hydra_overrides, override
from omegaconf import OmegaConf

from flavorfusion.errors import ConfigError
from tests.conftest import CONF, run_module

REQUIRED = ["hydra.launcher.project=p", "hydra.launcher.image_uri=IMG", "hydra.launcher.staging_bucket=gs://b"]

# a tiny Hydra app with the keys flavorfusion.train has (group, ckpt_path, paths, trainer)
APP_PY = """
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    return {"val/rougeL": float(cfg.lr)}

if __name__ == "__main__":
    main()
"""
APP_CONFIG = """
lr: 0.1
group: null
ckpt_path: null
paths:
  output_dir: ${hydra:runtime.output_dir}
trainer:
  devices: 1
  strategy: auto
  num_nodes: 1
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP_PY)
    (app / "config.yaml").write_text(APP_CONFIG)
    return app


def app_task(cfg) -> dict:
    return {"val/rougeL": float(cfg.lr)}  # what app.py's main does, for the local variant's in-process jobs


def launch(app_dir: Path, overrides: list[str], job_overrides: list[list[str]], config_name: str = "config",
           task_name: str = "app"):
    """Compose the app's multirun config and call the launcher as Hydra's sweeper does; returns JobReturns.

    (Through a real sweeper a FAILED job raises after the launch, hiding the other returns.)
    """
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    GlobalHydra.instance().clear()
    hydra_app = Hydra.create_main_hydra2(task_name=task_name,
                                         config_search_path=create_config_search_path(str(app_dir)))
    try:
        config = hydra_app.compose_config(config_name, overrides, run_mode=RunMode.MULTIRUN)
        HydraConfig.instance().set_config(config)
        context = HydraContext(config_loader=hydra_app.config_loader, callbacks=Callbacks(config))
        launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=app_task,
                                                           config=config)
        return launcher.launch(job_overrides, initial_job_idx=0)
    finally:
        GlobalHydra.instance().clear()


class FakeVertexClient(VertexJobClient):
    """Vertex AI stand-in. A job runs for two polls, then ends as its `lr` says: `reject` is refused at
    submission, `bad` fails on Vertex, any number (1 without `lr`) succeeds and writes metrics.json as
    flavorfusion.train does.
    read_metrics is the real one (fsspec), reading the local directory that stands in for the bucket."""

    instances: list["FakeVertexClient"] = []

    def __init__(self, project: str, region: str):
        super().__init__(project, region)
        self.jobs: dict = {}
        self.polls: Counter = Counter()
        self.cancelled: list[str] = []
        FakeVertexClient.instances.append(self)

    def connect(self) -> None:
        pass

    def submit(self, custom_job) -> str:
        if "lr=reject" in self.args(custom_job):
            raise RuntimeError("429 Quota exceeded for aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus")
        name = f"projects/p/locations/us-central1/customJobs/{1000 + len(self.jobs)}"
        self.jobs[name] = custom_job
        return name

    def get(self, name: str):
        from google.cloud.aiplatform_v1 import types

        self.polls[name] += 1
        args = dict(arg.split("=", 1) for arg in self.args(self.jobs[name]))
        if self.polls[name] < 2:
            return types.CustomJob(name=name, state=types.JobState.JOB_STATE_RUNNING)
        if args.get("lr") == "bad":
            return types.CustomJob(name=name, state=types.JobState.JOB_STATE_FAILED, error={
                "code": 13, "message": "The replica workerpool0-0 exited with a non-zero status of 1."})
        os.makedirs(args["paths.output_dir"], exist_ok=True)
        with open(os.path.join(args["paths.output_dir"], "metrics.json"), "w") as f:
            json.dump({"val/rougeL": float(args.get("lr", 1)) * 10, "train/loss": 1.5}, f)
        return types.CustomJob(name=name, state=types.JobState.JOB_STATE_SUCCEEDED)

    def cancel(self, name: str) -> None:
        self.cancelled.append(name)

    @staticmethod
    def args(custom_job) -> list[str]:
        return list(custom_job.job_spec.worker_pool_specs[0].container_spec.args)


@pytest.fixture
def fake_vertex(monkeypatch):
    FakeVertexClient.instances.clear()
    monkeypatch.setattr(client_module, "VertexJobClient", FakeVertexClient)
    return FakeVertexClient.instances


def vertex_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return ["hydra/launcher=vertex", *REQUIRED, f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"hydra.launcher.base_output_dir={tmp_path / 'bucket'}", "hydra.launcher.poll_interval=0.01",
            "hydra.launcher.run_id=r1", *extra]


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("missing", ["project", "image_uri", "staging_bucket"])
def test_a_missing_required_key_is_named(missing):
    params = {"project": "p", "image_uri": "IMG", "staging_bucket": "gs://b", missing: None}
    with pytest.raises(ConfigError, match=rf"^hydra\.launcher\.{missing} is required"):
        settings_from(params)


def settings_from(params: dict):
    from hydra_plugins.vertex_launcher.config import VertexLauncherConf

    return VertexLauncherConf(**params).checked(default_run_id="r0")


@pytest.mark.parametrize("value, seconds", [("3600", 3600), ("90m", 5400), ("24h", 86400), ("7d", 604800),
                                            (None, None)])
def test_timeout_forms(value, seconds):
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize("params, key", [
    ({"timeout": "soon"}, "hydra.launcher.timeout"),
    ({"labels": {"Team": "nlp"}}, "hydra.launcher.labels.Team"),
    ({"env": ["WANDB API KEY"]}, "hydra.launcher.env"),
    ({"env": ["HF_TOKEN"], "secrets": {"HF_TOKEN": "hf"}}, "hydra.launcher.env and hydra.launcher.secrets"),
    ({"replica_count": 0}, "hydra.launcher.replica_count"),
])
def test_bad_settings_name_their_key(params, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        settings_from({"project": "p", "image_uri": "IMG", "staging_bucket": "gs://b", **params})


def test_defaults_and_secret_names():
    settings = settings_from({"project": "p", "image_uri": "IMG", "staging_bucket": "gs://b/",
                              "secrets": {"WANDB_API_KEY": "wandb-api-key", "HF_TOKEN": "projects/q/secrets/hf"}})
    assert (settings.region, settings.machine_type, settings.accelerator_type, settings.accelerator_count) == (
        "us-central1", "g2-standard-4", "NVIDIA_L4", 1)
    assert settings.base_output_dir == "gs://b/runs"
    assert settings.secrets == {"WANDB_API_KEY": "projects/p/secrets/wandb-api-key/versions/latest",
                                "HF_TOKEN": "projects/q/secrets/hf/versions/latest"}


def test_only_job_level_hydra_overrides_reach_the_container():
    given = ["hydra/launcher=vertex", "hydra.launcher.project=p", "hydra.sweep.dir=x", "hydra.sweeper.params={}",
             "hydra.run.dir=y", "hydra.verbose=true", "hydra.job.chdir=true", "hydra.mode=MULTIRUN"]
    assert forwarded_hydra_overrides(given) == ["hydra.verbose=true", "hydra.job.chdir=true"]


@pytest.mark.parametrize("value", ["/gcs/b/runs/x/0", "gs://b/x", "/tmp/a b/c", "/tmp/it's", "/tmp/x,y=z"])
def test_added_overrides_read_back_as_the_same_value(value):
    assert OverridesParser.create().parse_override(override("paths.output_dir", value)).value() == value


# ----------------------------------------------------------------------------------------- dry run, specs


def read_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_dry_run_writes_one_gcloud_spec_per_job_and_calls_nothing(app_dir, tmp_path, fake_vertex):
    returns = launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true"), [["lr=0.1"], ["lr=0.5"]])
    assert fake_vertex == []  # no client was even created
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 2
    for num, lr in enumerate(["0.1", "0.5"]):
        spec_path = tmp_path / "sweep" / str(num) / "custom_job.yaml"
        spec = read_spec(spec_path)
        pool = spec["workerPoolSpecs"][0]
        assert pool["machineSpec"] == {"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4",
                                       "acceleratorCount": 1}
        container = pool["containerSpec"]
        assert container["imageUri"] == "IMG"
        assert container["command"] == ["python", "-m", "flavorfusion.train"]
        job_dir = f"{tmp_path / 'bucket'}/app/r1/{num}"
        assert container["args"] == [f"lr={lr}", f"hydra.run.dir={job_dir}", f"paths.output_dir={job_dir}",
                                     "ckpt_path=last", "group=app/sweep"]
        assert spec["scheduling"] == {"timeout": "86400s"}
        assert "gcloud ai custom-jobs create --project=p --region=us-central1" in spec_path.read_text()
        # the record Hydra keeps of a local job is kept for the remote one too
        assert OmegaConf.load(tmp_path / "sweep" / str(num) / ".hydra" / "overrides.yaml") == [f"lr={lr}"]
    summary = read_spec(tmp_path / "sweep" / "vertex_jobs.yaml")
    names = [job["display_name"] for job in summary["jobs"]]
    assert [job["state"] for job in summary["jobs"]] == ["DRY_RUN", "DRY_RUN"]
    assert names[0].startswith("app-r1-000-") and names[1].startswith("app-r1-001-") and names[0][-6:] != names[1][-6:]


def test_spec_round_trips_through_the_vertex_api_types(app_dir, tmp_path):
    from google.cloud.aiplatform_v1 import types

    launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true", "hydra.launcher.spot=true",
                                     "hydra.launcher.base_output_dir=gs://b/out"), [["lr=0.1"]])
    spec = read_spec(tmp_path / "sweep" / "0" / "custom_job.yaml")
    parsed = types.CustomJobSpec.from_json(json.dumps(spec))  # the JSON form gcloud --config reads
    assert parsed.scheduling.strategy == types.Scheduling.Strategy.SPOT
    assert parsed.base_output_directory.output_uri_prefix == "gs://b/out/app/r1/0"
    assert "paths.output_dir=/gcs/b/out/app/r1/0" in parsed.worker_pool_specs[0].container_spec.args


def test_multi_gpu_and_multi_node_jobs_set_the_trainer(app_dir, tmp_path):
    launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true", "hydra.launcher.accelerator_count=4",
                                     "hydra.launcher.replica_count=3", "hydra.launcher.machine_type=g2-standard-48"),
           [["lr=0.1"], ["lr=0.2", "trainer.strategy=fsdp"]])
    first = read_spec(tmp_path / "sweep" / "0" / "custom_job.yaml")
    chief, workers = first["workerPoolSpecs"]
    assert chief["replicaCount"] == "1" and workers["replicaCount"] == "2"
    assert workers["machineSpec"] == chief["machineSpec"] and workers["containerSpec"] == chief["containerSpec"]
    assert first["scheduling"]["restartJobOnWorkerRestart"] is True
    assert chief["containerSpec"]["args"][-3:] == ["trainer.devices=4", "trainer.num_nodes=3", "trainer.strategy=ddp"]
    # a key the user set keeps the user's value
    second = read_spec(tmp_path / "sweep" / "1" / "custom_job.yaml")["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert "trainer.strategy=fsdp" in second and "trainer.strategy=ddp" not in second


def test_user_group_and_checkpoint_are_kept_and_cpu_jobs_have_no_accelerator(app_dir, tmp_path):
    user = ["group=mine", "ckpt_path=/ckpt/a.ckpt"]  # a sweeper passes these to the launcher in every job's overrides
    launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true", "hydra.launcher.accelerator_type=null",
                                     "hydra.launcher.timeout=null", *user), [["lr=0.1", *user]])
    spec = read_spec(tmp_path / "sweep" / "0" / "custom_job.yaml")
    assert spec["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "g2-standard-4"}
    args = spec["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert args[:3] == ["lr=0.1", *user] and "group=app/sweep" not in args and "ckpt_path=last" not in args
    assert "scheduling" not in spec
    # the sweep is named after the user's group
    assert read_spec(tmp_path / "sweep" / "vertex_jobs.yaml")["jobs"][0]["display_name"].startswith("mine-r1-000-")


def test_an_unknown_accelerator_fails_before_anything_is_written(app_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.accelerator_type=NVIDIA_H9000"), [["lr=0.1"]])
    assert exit_info.value.code == 2
    assert "error: hydra.launcher.accelerator_type 'NVIDIA_H9000' is not a Vertex accelerator" in capsys.readouterr().err
    assert not (tmp_path / "sweep" / "0" / "custom_job.yaml").exists()


# -------------------------------------------------------------------------- submit and poll (fake client)


def test_jobs_are_submitted_then_waited_for_and_return_metrics_or_vertex_errors(app_dir, tmp_path, fake_vertex):
    returns = launch(app_dir, vertex_overrides(tmp_path), [["lr=0.1"], ["lr=bad"], ["lr=reject"], ["lr=0.5"]])
    (client,) = fake_vertex
    assert len(client.jobs) == 3  # the rejected one never became a job; the others still ran
    assert all(polls >= 2 for polls in client.polls.values())  # each was polled until it finished

    ok, vertex_failed, rejected, ok2 = returns
    assert ok.status == JobStatus.COMPLETED and ok.return_value == {"val/rougeL": 1.0, "train/loss": 1.5}
    assert ok2.return_value["val/rougeL"] == 5.0
    assert ok.overrides == ["lr=0.1"] and ok.cfg.lr == 0.1 and ok.hydra_cfg.hydra.job.num == 0
    assert vertex_failed.status == JobStatus.FAILED
    with pytest.raises(JobFailedError, match="exited with a non-zero status of 1"):
        _ = vertex_failed.return_value
    with pytest.raises(JobFailedError, match="submission rejected: RuntimeError: 429 Quota exceeded"):
        _ = rejected.return_value

    summary = {job["num"]: job for job in read_spec(tmp_path / "sweep" / "vertex_jobs.yaml")["jobs"]}
    assert [summary[n]["state"] for n in range(4)] == [SUCCEEDED, FAILED, FAILED, SUCCEEDED]
    assert summary[0]["vertex_job"].startswith("projects/p/locations/us-central1/customJobs/")
    assert summary[0]["metrics"] == {"val/rougeL": 1.0, "train/loss": 1.5}
    assert "non-zero status" in summary[1]["error"] and "Quota exceeded" in summary[2]["error"]


def test_return_metric_makes_the_return_value_a_float(app_dir, tmp_path, fake_vertex):
    (ret,) = launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.return_metric=val/rougeL"), [["lr=0.3"]])
    assert ret.return_value == 3.0


def test_ctrl_c_cancels_every_submitted_job(app_dir, tmp_path, monkeypatch):
    class InterruptedClient(FakeVertexClient):
        def get(self, name: str):
            if sum(self.polls.values()) == 2:  # the user presses Ctrl-C while the sweep waits
                raise KeyboardInterrupt
            return super().get(name)

    InterruptedClient.instances.clear()
    monkeypatch.setattr(client_module, "VertexJobClient", InterruptedClient)
    with pytest.raises(KeyboardInterrupt):
        launch(app_dir, vertex_overrides(tmp_path), [["lr=0.1"], ["lr=0.2"], ["lr=0.3"]])
    (client,) = InterruptedClient.instances
    assert sorted(client.cancelled) == sorted(client.jobs)
    assert len(client.cancelled) == 3


def test_env_values_reach_the_job_but_no_file_arg_or_log(app_dir, tmp_path, fake_vertex, monkeypatch, caplog, capfd):
    monkeypatch.setenv("WANDB_API_KEY", "sekrit-0123456789")
    with caplog.at_level(logging.DEBUG):
        launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.env=[WANDB_API_KEY]",
                                         "+hydra.launcher.secrets.HF_TOKEN=hf-token"), [["lr=0.1"]])
    (client,) = fake_vertex
    (custom_job,) = client.jobs.values()
    container = custom_job.job_spec.worker_pool_specs[0].container_spec
    assert {e.name: e.value for e in container.env} == {
        "WANDB_API_KEY": "sekrit-0123456789",
        "FLAVORFUSION_SECRET_HF_TOKEN": "projects/p/secrets/hf-token/versions/latest"}
    assert not any("sekrit" in arg for arg in container.args)
    for path in (tmp_path / "sweep").rglob("*"):
        if path.is_file():
            assert "sekrit" not in path.read_text(), path
    out, err = capfd.readouterr()
    assert "sekrit" not in caplog.text + out + err
    spec = read_spec(tmp_path / "sweep" / "0" / "custom_job.yaml")
    assert {"name": "WANDB_API_KEY"} in spec["workerPoolSpecs"][0]["containerSpec"]["env"]


def test_a_sweep_started_from_another_entry_point_must_say_what_the_container_runs(app_dir, tmp_path, monkeypatch,
                                                                                      capsys):
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="flavorfusion.evaluate")
    monkeypatch.setitem(sys.modules, "__main__", main)
    with pytest.raises(SystemExit):
        launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true"), [["lr=0.1"]])
    assert "set hydra.launcher.command=[python,-m,flavorfusion.evaluate]" in capsys.readouterr().err
    launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.dry_run=true",
                                     "hydra.launcher.command=[python,-m,flavorfusion.evaluate]"), [["lr=0.1"]])


def test_an_unset_env_var_fails_before_submission(app_dir, tmp_path, fake_vertex, monkeypatch, capsys):
    monkeypatch.delenv("FLAVORFUSION_TEST_UNSET", raising=False)
    with pytest.raises(SystemExit):
        launch(app_dir, vertex_overrides(tmp_path, "hydra.launcher.env=[FLAVORFUSION_TEST_UNSET]"), [["lr=0.1"]])
    assert "error: hydra.launcher.env names FLAVORFUSION_TEST_UNSET, not set" in capsys.readouterr().err
    assert fake_vertex == []


# ------------------------------------------------------------------- train's start-up checks, per job


@pytest.fixture
def train_sweep(monkeypatch):
    """Launch as `python -m flavorfusion.train -m ...` does: train's config, started from flavorfusion.train."""
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="flavorfusion.train")
    monkeypatch.setitem(sys.modules, "__main__", main)

    def run(tmp_path: Path, common: list[str], job_overrides: list[list[str]], *launcher: str):
        # a sweeper passes the command line's overrides to the launcher in every job's overrides
        return launch(CONF, vertex_overrides(tmp_path, *launcher, *common), [[*common, *o] for o in job_overrides],
                      config_name="train", task_name="train")

    return run


@pytest.fixture
def memory_reviews(tmp_path):
    """A data.path glob matching one file on fsspec's in-memory filesystem (standing in for gs://)."""
    import fsspec

    fs, root = fsspec.filesystem("memory"), f"/{tmp_path.name}"
    fs.pipe(f"{root}/reviews/part-0.jsonl", b'{"id": "g1", "reviews": ["good"], "summary": "good"}\n')
    yield f"memory://{root}/reviews/*.jsonl"
    fs.rm(root, recursive=True)


def error_line(capsys) -> str:
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return line


def assert_nothing_written_or_submitted(tmp_path: Path, fake_vertex) -> None:
    assert fake_vertex == []  # not even a client
    assert not list(tmp_path.rglob("custom_job.yaml"))
    assert not (tmp_path / "sweep" / "vertex_jobs.yaml").exists() and not (tmp_path / "sweep" / "0").exists()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_sweep_without_data_path_names_every_job_and_submits_nothing(train_sweep, tmp_path, fake_vertex, capsys,
                                                                       dry_run):
    with pytest.raises(SystemExit) as exit_info:
        train_sweep(tmp_path, ["experiment=sweep_prune"], [["prune.amount=0.1"], ["prune.amount=0.5"]],
                    f"hydra.launcher.dry_run={dry_run}")
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert line.startswith("error: 2 of 2 jobs fail the checks train runs at start-up; nothing submitted: "
                           "#0 (prune.amount=0.1), #1 (prune.amount=0.5): data.path: missing value"), line
    assert_nothing_written_or_submitted(tmp_path, fake_vertex)


def test_only_the_job_out_of_bounds_is_named(train_sweep, tmp_path, fake_vertex, capsys):
    with pytest.raises(SystemExit):
        train_sweep(tmp_path, ["experiment=quickstart", "prune=l1_unstructured"],
                    [["prune.amount=0.1"], ["prune.amount=1.5"], ["prune.amount=0.5"]])
    assert error_line(capsys) == ("error: 1 of 3 jobs fails the checks train runs at start-up; nothing submitted: "
                                  "#1 (prune.amount=1.5): prune.amount=1.5 must be in [0, 1)")
    assert_nothing_written_or_submitted(tmp_path, fake_vertex)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_sweep_that_passes_the_checks_is_written_and_submitted(train_sweep, tmp_path, fake_vertex, memory_reviews,
                                                                 dry_run):
    returns = train_sweep(tmp_path, ["experiment=quickstart", f"data.path={memory_reviews}"],
                          [["prune.amount=0.1"], ["prune.amount=0.5"], ["prune.amount=0.9"]],
                          f"hydra.launcher.dry_run={dry_run}")
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 3
    assert len(list((tmp_path / "sweep").glob("*/custom_job.yaml"))) == 3
    if dry_run:
        assert fake_vertex == []
    else:
        (client,) = fake_vertex
        assert len(client.jobs) == 3
        assert all(f"data.path={memory_reviews}" in client.args(job) for job in client.jobs.values())


def test_a_data_path_matching_nothing_fails_the_sweep(train_sweep, tmp_path, fake_vertex, memory_reviews, capsys):
    pattern = memory_reviews.replace("*.jsonl", "*.csv")
    with pytest.raises(SystemExit):
        train_sweep(tmp_path, ["experiment=quickstart", f"data.path={pattern}"], [["seed=1"], ["seed=2"]],
                    "hydra.launcher.dry_run=true")
    assert error_line(capsys) == ("error: 2 of 2 jobs fail the checks train runs at start-up; nothing submitted: "
                                  f"#0 (seed=1), #1 (seed=2): data.path: no file matches '{pattern}'")
    assert_nothing_written_or_submitted(tmp_path, fake_vertex)


GCS_FAILURES = {
    "no credentials": "data.path: cannot list gs://b/lsars/*.csv: no Google Cloud credentials (run `gcloud auth",
    "access denied": "data.path: cannot list gs://b/lsars/*.csv: OSError: 403 caller does not have "
                     "storage.objects.list access",
}


@pytest.mark.parametrize("failure", GCS_FAILURES)
def test_a_gcs_data_path_that_cannot_be_listed_is_one_line(train_sweep, tmp_path, fake_vertex, monkeypatch, capsys,
                                                          failure):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    import flavorfusion.io

    def default(*args, **kwargs):
        if failure == "no credentials":
            raise DefaultCredentialsError("Your default credentials were not found.")
        return object(), "p"

    def expand_paths(paths):
        raise OSError("403 caller does not have storage.objects.list access\n{'error': {'code': 403}}")

    monkeypatch.setattr(google.auth, "default", default)
    monkeypatch.setattr(flavorfusion.io, "expand_paths", expand_paths)
    with pytest.raises(SystemExit):
        train_sweep(tmp_path, ["experiment=quickstart", "data.path=gs://b/lsars/*.csv"], [["seed=1"], ["seed=2"]],
                    "hydra.launcher.dry_run=true")
    line = error_line(capsys)
    assert line.startswith("error: 2 of 2 jobs fail the checks train runs at start-up; nothing submitted: "
                           f"#0 (seed=1), #1 (seed=2): {GCS_FAILURES[failure]}"), line
    assert_nothing_written_or_submitted(tmp_path, fake_vertex)


# ---------------------------------------------------------------------------------- the engine on its own


class RecordingBackend:
    """Jobs finish after `runs_for` polls (`quick` ones at the first); `fail` and `reject` name jobs that
    fail or are refused; the first `flaky` polls of each job raise."""

    def __init__(self, runs_for=3, fail=(), reject=(), flaky=0, quick=()):
        self.runs_for, self.fail, self.reject, self.flaky = runs_for, set(fail), set(reject), flaky
        self.quick = set(quick)
        self.polls: Counter = Counter()
        self.events: list[tuple] = []

    def submit(self, job):
        self.events.append(("submit", job))
        if job in self.reject:
            raise ValueError("machine type g2-standard-1 is not supported")
        return f"id-{job}"

    def get(self, job_id):
        self.events.append(("get", job_id))
        self.polls[job_id] += 1
        if self.flaky and self.polls[job_id] <= self.flaky:
            raise ConnectionError("503 Service Unavailable")
        if self.polls[job_id] < self.runs_for and job_id.removeprefix("id-") not in self.quick:
            return JobState(RUNNING)
        return JobState(FAILED, "out of memory") if job_id.removeprefix("id-") in self.fail else JobState(SUCCEEDED)

    def cancel(self, job_id):
        self.events.append(("cancel", job_id))

    def result(self, job, job_id):
        return {"job": job}


def test_engine_submits_all_before_polling_and_backs_off_to_the_limit():
    backend, sleeps = RecordingBackend(runs_for=6, fail={"b"}), []
    outcomes = run_jobs(backend, ["a", "b", "c"], names=["a", "b", "c"], first_poll_delay=1, max_poll_delay=4,
                        sleep=sleeps.append)
    assert [e[0] for e in backend.events[:3]] == ["submit"] * 3
    assert sleeps == [1, 2, 4, 4, 4, 4]
    assert [(o.state, o.message, o.return_value) for o in outcomes] == [
        (SUCCEEDED, "", {"job": "a"}), (FAILED, "out of memory", None), (SUCCEEDED, "", {"job": "c"})]


def test_engine_survives_rejections_and_transient_poll_errors():
    backend = RecordingBackend(runs_for=1, reject={"b"}, flaky=2)
    outcomes = run_jobs(backend, ["a", "b"], names=["a", "b"], first_poll_delay=0, max_poll_delay=0,
                        sleep=lambda s: None)
    assert outcomes[0].state == SUCCEEDED
    assert outcomes[1].state == FAILED and "not supported" in outcomes[1].message


def test_engine_gives_up_on_a_job_it_cannot_read():
    backend = RecordingBackend(flaky=100)
    (outcome,) = run_jobs(backend, ["a"], names=["a"], first_poll_delay=0, max_poll_delay=0, max_poll_errors=3,
                          sleep=lambda s: None)
    assert outcome.state == FAILED and "lost track" in outcome.message and backend.polls["id-a"] == 3


def test_engine_interrupt_cancels_only_unfinished_jobs():
    backend = RecordingBackend(runs_for=10**6, quick={"a"})
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 2:  # Ctrl-C during the second wait, after "a" finished
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(backend, ["a", "b", "c"], names=["a", "b", "c"], first_poll_delay=0, max_poll_delay=0, sleep=sleep)
    assert [e for e in backend.events if e[0] == "cancel"] == [("cancel", "id-b"), ("cancel", "id-c")]


def test_interrupt_while_submitting_cancels_what_was_submitted():
    backend = RecordingBackend()
    submit = backend.submit

    def submit_then_interrupt(job):
        if job == "c":
            raise KeyboardInterrupt
        return submit(job)

    backend.submit = submit_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        run_jobs(backend, ["a", "b", "c"], names=["a", "b", "c"], first_poll_delay=0, max_poll_delay=0,
                 sleep=lambda s: None)
    assert [e for e in backend.events if e[0] == "cancel"] == [("cancel", "id-a"), ("cancel", "id-b")]


# --------------------------------------------------------------------- the local variant and Hydra's suites


def test_local_variant_returns_values_and_failures(app_dir, tmp_path):
    returns = launch(app_dir, ["hydra/launcher=vertex_local", "hydra.launcher.max_parallel=2",
                               "hydra.launcher.poll_interval=0.05", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                     [["lr=0.1"], ["lr=bad"], ["lr=0.3"]])
    assert returns[0].return_value == {"val/rougeL": 0.1}
    assert [r.status for r in returns] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    with pytest.raises(JobFailedError, match="ValueError: could not convert string to float: 'bad'"):
        _ = returns[1].return_value
    assert (tmp_path / "sweep" / "2" / ".hydra" / "config.yaml").exists()


@pytest.mark.parametrize("launcher_name, overrides",
                         [("vertex_local", ["hydra.launcher.max_parallel=2", "hydra.launcher.poll_interval=0.05"])])
class TestVertexLocalLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags",
                         [({}, ["-m", "hydra/launcher=vertex_local", "hydra.launcher.poll_interval=0.05"])])
class TestVertexLocalLauncherIntegration(IntegrationTestSuite):
    pass


# ------------------------------------------------------------------------------- command lines, end to end


def test_cli_dry_run_of_the_stand_in_app(app_dir, tmp_path):
    import subprocess

    sweep = tmp_path / "DIR"
    done = subprocess.run([sys.executable, str(app_dir / "app.py"), "-m", "hydra/launcher=vertex",
                           "hydra.launcher.dry_run=true", *REQUIRED, "lr=0.1,0.5", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    args = [read_spec(sweep / n / "custom_job.yaml")["workerPoolSpecs"][0]["containerSpec"]["args"] for n in "01"]
    assert "lr=0.1" in args[0] and "lr=0.5" in args[1]


def test_cli_missing_project_is_one_line(app_dir, tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, str(app_dir / "app.py"), "-m", "hydra/launcher=vertex",
                           "hydra.launcher.image_uri=IMG", "hydra.launcher.staging_bucket=gs://b", "lr=0.1,0.5",
                           f"hydra.sweep.dir={tmp_path / 'DIR'}"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: hydra.launcher.project is required: the GCP project jobs run in"


def test_done_when_dry_run_of_flavorfusion_train(tmp_path):
    """The issue's command, as written: two specs, machine, accelerator, image and each job's prune.amount."""
    sweep = tmp_path / "DIR"
    done = run_module("flavorfusion.train", "-m", "hydra/launcher=vertex", "hydra.launcher.dry_run=true", *REQUIRED,
                      "experiment=quickstart", "prune.amount=0.1,0.5", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    specs = sorted(sweep.glob("*/custom_job.yaml"))
    assert [p.parent.name for p in specs] == ["0", "1"]
    for spec_path, amount in zip(specs, ["0.1", "0.5"], strict=True):
        pool = read_spec(spec_path)["workerPoolSpecs"][0]
        assert pool["machineSpec"]["machineType"] == "g2-standard-4"
        assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_L4"
        assert pool["containerSpec"]["imageUri"] == "IMG"
        assert f"prune.amount={amount}" in pool["containerSpec"]["args"]
        assert "ckpt_path=last" in pool["containerSpec"]["args"]


# ------------------------------------------------------------------------------------ sweep experiments

SWEEPS = {"sweep_augmentation": 9, "sweep_top_k": 5, "sweep_prune": 9}


def sweep_size(params: dict) -> int:
    size = 1
    for value in params.values():
        size *= len(str(value).split(","))
    return size


@pytest.mark.parametrize("experiment, jobs", SWEEPS.items())
def test_sweep_experiments_set_a_group_and_sweeper_params(experiment, jobs):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.group == experiment
    assert sweep_size(cfg.hydra.sweeper.params) == jobs


@pytest.mark.slow
@pytest.mark.parametrize("experiment, jobs", SWEEPS.items())
def test_sweep_experiments_fan_out_to_vertex_specs(experiment, jobs, tmp_path):
    sweep = tmp_path / "DIR"
    (tmp_path / "lsars").mkdir()
    (tmp_path / "lsars" / "part-0.csv").write_text("id,summary,review_str\n")
    data_path = f"file://{tmp_path}/lsars/*.csv"  # the launcher checks it matches files, as train does
    done = run_module("flavorfusion.train", "-m", f"experiment={experiment}", "hydra/launcher=vertex",
                      "hydra.launcher.dry_run=true", *REQUIRED, f"data.path={data_path}",
                      f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    specs = sorted(sweep.glob("*/custom_job.yaml"))
    assert len(specs) == jobs
    args = read_spec(specs[0])["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert f"experiment={experiment}" in args
    # the sweeper escapes ':' in values (data.path=file\://...); the container's Hydra reads the same path back
    (arg,) = [OverridesParser.create().parse_override(a) for a in args if a.startswith("data.path=")]
    assert arg.value() == data_path
    assert not any(a.startswith("group=") for a in args)  # the experiment sets the W&B group itself
    assert read_spec(sweep / "vertex_jobs.yaml")["jobs"][0]["display_name"].startswith(f"{experiment}-")

