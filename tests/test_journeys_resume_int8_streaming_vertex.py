"""Journeys end to end on the tiny model (issue 22): the spot-VM resume, an int8 export summarized and served,
streaming training, early stopping, Cloud Run's PORT, and the real Vertex job client against a mocked service."""

import json

import pytest
from lightning.pytorch.callbacks import Callback

from flavorfusion.training import train

from .conftest import FAST, compose_train
from .serving_helpers import Server, free_port, request

REVIEWS = ["The butter chicken was rich and the naan fresh.", "Slow service on a Friday night but friendly staff."]


class Preempt(Callback):
    """Stops the run as a preempted spot VM would: an error at the start of epoch `at_epoch`, after the previous
    epoch's checkpoints were written."""

    at_epoch: int | None = None
    started_at: list = []

    def on_train_epoch_start(self, trainer, pl_module):
        Preempt.started_at.append((trainer.current_epoch, trainer.global_step))
        if trainer.current_epoch == Preempt.at_epoch:
            raise RuntimeError("preempted")


@pytest.mark.slow
def test_spot_vm_resume_with_ckpt_path_last_continues_the_global_step(tmp_path):
    overrides = [*FAST, "trainer.max_epochs=2", "ckpt_path=last", "export=false",
                 "+callbacks.preempt._target_=tests.test_journeys_resume_int8_streaming_vertex.Preempt"]
    Preempt.at_epoch, Preempt.started_at = 1, []
    with pytest.raises(RuntimeError, match="preempted"):
        train(compose_train(overrides, tmp_path))  # no last.ckpt yet: starts fresh, stops after epoch 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    steps_per_epoch = Preempt.started_at[-1][1]
    assert Preempt.started_at == [(0, 0), (1, steps_per_epoch)] and steps_per_epoch == 3

    Preempt.at_epoch, Preempt.started_at = None, []
    resumed = train(compose_train(overrides, tmp_path))  # the same command again, as the restarted VM runs it
    assert Preempt.started_at == [(1, steps_per_epoch)]  # epoch 0 is not trained again
    assert resumed.trainer.global_step == 2 * steps_per_epoch
    assert resumed.trainer.current_epoch == 2


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    run = tmp_path_factory.mktemp("int8-run")
    result = train(compose_train([*FAST, "quantize=int8_dynamic", "logger=none"], run))
    directory = result.objects["quantized_export_dir"]
    assert directory == str(run / "model_int8_dynamic")
    return directory


@pytest.mark.slow
def test_int8_export_is_summarized(int8_export, tmp_path):
    import pyarrow.parquet as pq

    from flavorfusion.summarization import summarize

    from .test_summarize import compose_summarize

    output = tmp_path / "summaries.parquet"
    report = summarize(compose_summarize([f"model.name_or_path={int8_export}", f"output={output}", "data.subset=6",
                                          "data.path=${ff.resource:quickstart_reviews.jsonl}"]))
    rows = pq.read_table(output).to_pylist()
    assert report.generated == len(rows) == 6
    assert all(r["summary"].strip() and r["model"] == int8_export for r in rows)


@pytest.mark.slow
def test_int8_export_is_served(int8_export, tmp_path):
    s = Server(tmp_path, [f"model.name_or_path={int8_export}", "generation.max_new_tokens=6",
                          "generation.min_new_tokens=3"])
    try:
        s.wait_healthy()
        status, _, raw = request(s.url + "/summarize", {"reviews": REVIEWS})
        assert status == 200, raw
        assert json.loads(raw)["summary"].strip()
    finally:
        s.stop()


@pytest.mark.slow
def test_cloud_run_port_env_var_is_the_port_served(int8_export, tmp_path):
    """Cloud Run sets PORT; the server listens there (serve.port is the default, not what it binds)."""
    port, configured = free_port(), free_port()
    s = Server(tmp_path, [f"model.name_or_path={int8_export}", "generation.max_new_tokens=4", "generation.min_new_tokens=2"],
               env={"PORT": str(port)}, port=configured)  # the helper passes serve.port=<configured>
    s.url = f"http://127.0.0.1:{port}"
    try:
        s.wait_healthy()
        status, _, raw = request(s.url + "/summarize", {"reviews": REVIEWS})
        assert status == 200 and json.loads(raw)["summary"].strip()
        with pytest.raises(OSError):  # nothing listens on serve.port
            request(f"http://127.0.0.1:{configured}/healthz", timeout=2)
    finally:
        s.stop()


@pytest.mark.slow
def test_streaming_training_end_to_end(tmp_path):
    result = train(compose_train([*FAST, "data.streaming=true", "trainer.max_steps=4", "trainer.max_epochs=-1",
                                  "data.shuffle_buffer=16"], tmp_path))
    assert result.trainer.global_step == 4
    assert (tmp_path / "model" / "model.safetensors").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "val/rougeL" in metrics  # validation ran on the streamed held-out groups


@pytest.mark.slow
def test_early_stopping_stops_before_max_epochs(tmp_path):
    # an improvement of 100 ROUGE points is impossible: with patience 1 the run stops after its second epoch
    result = train(compose_train([*FAST, "callbacks=early_stopping", "trainer.max_epochs=6",
                                  "callbacks.early_stopping.patience=1", "+callbacks.early_stopping.min_delta=100",
                                  "logger=none"], tmp_path))
    stopper = next(cb for cb in result.trainer.callbacks if type(cb).__name__ == "EarlyStopping")
    assert result.trainer.current_epoch == 2 < 6
    assert stopper.stopped_epoch == 1 and result.trainer.should_stop
    assert result.trainer.global_step == 2 * 3


# ---- the real VertexJobClient against a mocked service -----------------------------------------------------

class FakeJobService:
    """google.cloud.aiplatform_v1.JobServiceClient, recording calls."""

    instances: list = []

    def __init__(self, client_options=None, **kwargs):
        self.client_options, self.calls = client_options, []
        FakeJobService.instances.append(self)

    def create_custom_job(self, parent, custom_job):
        self.calls.append(("create", parent, custom_job))
        return type("Job", (), {"name": f"{parent}/customJobs/123"})()

    def get_custom_job(self, name):
        self.calls.append(("get", name))
        return {"name": name, "state": "JOB_STATE_SUCCEEDED"}

    def cancel_custom_job(self, name):
        self.calls.append(("cancel", name))


def test_vertex_job_client_talks_to_the_regional_endpoint_with_its_parent(monkeypatch):
    from google.cloud import aiplatform_v1
    from hydra_plugins.vertex_launcher.client import VertexJobClient

    FakeJobService.instances = []
    monkeypatch.setattr(aiplatform_v1, "JobServiceClient", FakeJobService)
    client = VertexJobClient("my-project", "europe-west4")
    client.connect()
    (service,) = FakeJobService.instances
    assert service.client_options == {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}
    name = client.submit({"display_name": "train-0"})
    assert name == "projects/my-project/locations/europe-west4/customJobs/123"
    assert client.get(name)["state"] == "JOB_STATE_SUCCEEDED"
    client.cancel(name)
    assert service.calls == [("create", "projects/my-project/locations/europe-west4", {"display_name": "train-0"}),
                             ("get", name), ("cancel", name)]


def test_vertex_job_client_reads_a_jobs_metrics(tmp_path):
    from hydra_plugins.vertex_launcher.client import VertexJobClient

    (tmp_path / "metrics.json").write_text(json.dumps({"val/rougeL": 12.5}))
    assert VertexJobClient("p", "r").read_metrics(f"file://{tmp_path}/") == {"val/rougeL": 12.5}


def test_vertex_job_client_without_credentials_is_one_line(monkeypatch, tmp_path):
    from hydra_plugins.vertex_launcher.client import VertexJobClient

    from flavorfusion.errors import ConfigError

    # no credentials anywhere google-auth looks: no key file, an empty gcloud config, no metadata server probe
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    with pytest.raises(ConfigError, match=r"^no Google Cloud credentials: run `gcloud auth application-default "
                                          r"login` \(or set GOOGLE_APPLICATION_CREDENTIALS\)$"):
        VertexJobClient("my-project", "us-central1").connect()  # the real aiplatform client, unmocked
