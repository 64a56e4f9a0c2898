"""flavorfusion.vertex_env: Vertex's CLUSTER_SPEC -> the variables Lightning's DDP reads; secret references; and
nothing of it outside a Vertex AI job."""

import json
import logging
import os

import pytest

from flavorfusion.vertex_env import (
    SECRET_ENV_PREFIX,
    configure_from_vertex_env,
    configure_on_vertex,
    on_vertex,
    parse_cluster_spec,
    resolve_secret_env,
)


def cluster_spec(task_type: str, index: int, workers: int = 2) -> str:
    # the shape Vertex AI sets on every replica of a custom job
    return json.dumps({
        "cluster": {
            "workerpool0": ["cmle-training-workerpool0-1a2b-0:2222"],
            "workerpool1": [f"cmle-training-workerpool1-1a2b-{i}:2222" for i in range(workers)],
        },
        "environment": "cloud",
        "task": {"type": task_type, "index": index},
        "job": "{}",
    })


def test_without_cluster_spec_nothing_changes():
    environ = {"PATH": "/bin", "RANK": "3"}
    assert configure_from_vertex_env(environ) == {}
    assert environ == {"PATH": "/bin", "RANK": "3"}


@pytest.mark.parametrize("environ, expected", [
    ({"PATH": "/bin"}, False),
    ({"CLOUD_ML_JOB_ID": "123"}, True),
    ({"CLUSTER_SPEC": "{}"}, True),
    ({"AIP_MODEL_DIR": "gs://b/m"}, True),
    ({"CLOUD_ML_JOB_ID": ""}, False),
])
def test_on_vertex_reads_the_variables_vertex_sets(environ, expected):
    assert on_vertex(environ) is expected


def test_outside_vertex_secret_references_are_left_alone():
    environ = {SECRET_ENV_PREFIX + "WANDB_API_KEY": "projects/p/secrets/k/versions/1"}
    assert configure_on_vertex(environ, access_secret=lambda ref: pytest.fail("must not be fetched")) == {}
    assert environ == {SECRET_ENV_PREFIX + "WANDB_API_KEY": "projects/p/secrets/k/versions/1"}


def test_in_a_vertex_job_secrets_and_cluster_are_configured():
    environ = {"CLOUD_ML_JOB_ID": "123", SECRET_ENV_PREFIX + "HF_TOKEN": "projects/p/secrets/hf/versions/1",
               "CLUSTER_SPEC": cluster_spec("workerpool1", 0)}
    found = configure_on_vertex(environ, access_secret=lambda ref: "token")
    assert found["secrets"] == ["HF_TOKEN"] and found["node_rank"] == 1
    assert environ["HF_TOKEN"] == "token" and environ["NODE_RANK"] == "1"


def test_chief_of_three_nodes_gets_master_address_and_node_rank_0():
    environ = {"CLUSTER_SPEC": cluster_spec("workerpool0", 0), "WORLD_SIZE": "3", "RANK": "0"}
    found = configure_from_vertex_env(environ)
    assert found == {"num_nodes": 3, "node_rank": 0, "master_addr": "cmle-training-workerpool0-1a2b-0",
                     "master_port": 2222}
    assert environ["MASTER_ADDR"] == "cmle-training-workerpool0-1a2b-0"
    assert environ["MASTER_PORT"] == "2222"
    assert environ["NODE_RANK"] == "0"
    # node-level counts from the platform would mislead Lightning, which sets per-process ones itself
    assert "WORLD_SIZE" not in environ and "RANK" not in environ


def test_second_worker_is_node_2():
    environ = {"CLUSTER_SPEC": cluster_spec("workerpool1", 1)}
    configure_from_vertex_env(environ)
    assert environ["NODE_RANK"] == "2"
    assert environ["MASTER_ADDR"] == "cmle-training-workerpool0-1a2b-0"


def test_single_node_job_leaves_the_environment_to_lightning():
    environ = {"CLUSTER_SPEC": cluster_spec("workerpool0", 0, workers=0)}
    assert configure_from_vertex_env(environ)["num_nodes"] == 1
    assert "MASTER_ADDR" not in environ and "NODE_RANK" not in environ


@pytest.mark.parametrize("text, message", [
    ("not json", "CLUSTER_SPEC is not a Vertex AI cluster spec"),
    (json.dumps({"cluster": {}}), "CLUSTER_SPEC is not a Vertex AI cluster spec"),
    (cluster_spec("workerpool3", 0), "not a training node"),
    (json.dumps({"cluster": {"workerpool0": ["nohost"]}, "task": {"type": "workerpool0", "index": 0}}),
     "is not host:port"),
])
def test_malformed_cluster_spec_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_cluster_spec(text)


def test_lightning_reads_what_was_set(monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment

    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK"):
        # set, then delete: monkeypatch then removes what configure_from_vertex_env sets, so no later test
        # (a Lightning run) sees this fake cluster
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLUSTER_SPEC", cluster_spec("workerpool1", 0))
    configure_from_vertex_env()
    env = LightningEnvironment()
    assert (env.main_address, env.main_port, env.node_rank()) == ("cmle-training-workerpool0-1a2b-0", 2222, 1)
    # Lightning starts the per-node processes itself (no LOCAL_RANK: not launched externally)
    assert not env.creates_processes_externally


def test_cluster_variables_go_to_os_environ_and_are_undone_after_a_test():
    """Self-contained (not relying on test order): the variables configure_from_vertex_env writes into
    os.environ by default are removed again by the set-then-delete pattern above, so no later Lightning run
    in the same process sees a fake cluster."""
    names = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK")
    before = {name: os.environ.get(name) for name in names}
    with pytest.MonkeyPatch.context() as mp:
        for name in names:
            mp.setenv(name, "")
            mp.delenv(name)
        mp.setenv("CLUSTER_SPEC", cluster_spec("workerpool1", 1))
        configure_from_vertex_env()
        assert (os.environ["MASTER_ADDR"], os.environ["NODE_RANK"]) == ("cmle-training-workerpool0-1a2b-0", "2")
    assert {name: os.environ.get(name) for name in names} == before
    assert "CLUSTER_SPEC" not in os.environ


def test_secret_reference_becomes_the_variable_and_its_value_is_not_logged(caplog):
    ref = "projects/p/secrets/wandb-api-key/versions/latest"
    environ = {SECRET_ENV_PREFIX + "WANDB_API_KEY": ref}
    asked = []

    def access(name: str) -> str:
        asked.append(name)
        return "s3cr3t-value"

    with caplog.at_level(logging.DEBUG):
        found = configure_from_vertex_env(environ, access_secret=access)
    assert asked == [ref]
    assert environ == {"WANDB_API_KEY": "s3cr3t-value"}  # the reference is gone: DDP children inherit the value
    assert found == {"secrets": ["WANDB_API_KEY"]}
    assert "s3cr3t-value" not in caplog.text and "WANDB_API_KEY" in caplog.text


def test_a_variable_that_has_a_value_keeps_it():
    environ = {SECRET_ENV_PREFIX + "WANDB_API_KEY": "projects/p/secrets/k/versions/1", "WANDB_API_KEY": "mine"}
    assert resolve_secret_env(environ, access_secret=lambda ref: pytest.fail("must not be fetched")) == []
    assert environ == {"WANDB_API_KEY": "mine"}


def test_an_unreadable_secret_names_the_reference_and_the_variable():
    environ = {SECRET_ENV_PREFIX + "HF_TOKEN": "projects/p/secrets/hf/versions/latest"}

    def denied(ref: str) -> str:
        raise PermissionError("403 Permission 'secretmanager.versions.access' denied")

    with pytest.raises(RuntimeError, match=r"cannot read secret projects/p/secrets/hf/versions/latest for HF_TOKEN"):
        resolve_secret_env(environ, access_secret=denied)


TWO_NODE_SCRIPT = """
import os
import lightning as L
from lightning.pytorch.demos.boring_classes import BoringModel
from flavorfusion.vertex_env import configure_from_vertex_env

found = configure_from_vertex_env()
trainer = L.Trainer(accelerator="cpu", devices=1, num_nodes=found["num_nodes"], strategy="ddp", max_steps=2,
                    limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=os.environ["ROOT_DIR"])
trainer.fit(BoringModel())
print(f"RESULT node_rank={found['node_rank']} global_rank={trainer.global_rank} world_size={trainer.world_size}")
"""


@pytest.mark.slow
def test_two_nodes_meet_through_the_cluster_spec(tmp_path):
    """Two processes given Vertex-style CLUSTER_SPECs (chief, worker) form one DDP group on this machine."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = {"workerpool0": [f"127.0.0.1:{port}"], "workerpool1": ["127.0.0.1:2222"]}
    script = tmp_path / "two_nodes.py"
    script.write_text(TWO_NODE_SCRIPT)
    nodes = []
    for task_type in ("workerpool0", "workerpool1"):
        spec = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}, "environment": "cloud"})
        env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK",
                                                                   "LOCAL_RANK", "WORLD_SIZE", "RANK")}
        env.update(CLUSTER_SPEC=spec, ROOT_DIR=str(tmp_path / task_type), RANK="7", WORLD_SIZE="2")
        nodes.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    results = sorted(line for out in outputs for line in out.splitlines() if line.startswith("RESULT"))
    assert results == ["RESULT node_rank=0 global_rank=0 world_size=2",
                       "RESULT node_rank=1 global_rank=1 world_size=2"], outputs
