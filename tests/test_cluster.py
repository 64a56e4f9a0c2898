"""flavorfusion.cluster: Vertex's CLUSTER_SPEC -> the variables Lightning's DDP reads; secret references."""

import json
import logging

import pytest

from flavorfusion.cluster import (
    SECRET_ENV_PREFIX,
    configure_from_vertex_env,
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
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLUSTER_SPEC", cluster_spec("workerpool1", 0))
    configure_from_vertex_env()
    env = LightningEnvironment()
    assert (env.main_address, env.main_port, env.node_rank()) == ("cmle-training-workerpool0-1a2b-0", 2222, 1)
    # Lightning starts the per-node processes itself (no LOCAL_RANK: not launched externally)
    assert not env.creates_processes_externally


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
