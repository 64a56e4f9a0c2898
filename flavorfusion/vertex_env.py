"""Vertex AI only: set up a training process from what Vertex gives its container (the cluster spec and secret
references). Nothing here runs outside Vertex.

`configure_on_vertex()` runs at the start of every training run (`flavorfusion.training.train`) and does nothing
unless `on_vertex()` says the process is a Vertex AI job: Vertex sets `CLOUD_ML_JOB_ID` (and `CLOUD_ML_PROJECT_ID`)
in every custom-job container, `CLUSTER_SPEC` on the replicas of a job, and `AIP_*` variables (e.g.
`AIP_MODEL_DIR`). There it resolves `FLAVORFUSION_SECRET_*` references (set by the Vertex launcher,
`hydra/launcher=vertex`) from Secret Manager and sets the multi-node variables.

Multi-node: Vertex starts one container per replica and describes the cluster in `CLUSTER_SPEC`
(JSON: `{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...]}, "task": {"type": "workerpool0",
"index": 0}, ...}`). Lightning's default environment needs MASTER_ADDR, MASTER_PORT and NODE_RANK on every
node and then starts `trainer.devices` processes per node itself, computing WORLD_SIZE and the global ranks.
"""

import json
import logging
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

# FLAVORFUSION_SECRET_WANDB_API_KEY=projects/p/secrets/wandb-api-key/versions/latest sets WANDB_API_KEY
SECRET_ENV_PREFIX = "FLAVORFUSION_SECRET_"
# variables Vertex AI sets in a custom job's containers (any one of them marks a Vertex process)
VERTEX_VARIABLES = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "CLUSTER_SPEC")
VERTEX_PREFIX = "AIP_"
# pools that run training processes: the chief (workerpool0) and the workers (workerpool1)
TRAINING_POOLS = ("workerpool0", "workerpool1")


@dataclass(frozen=True)
class ClusterInfo:
    num_nodes: int
    node_rank: int
    master_addr: str
    master_port: int


def parse_cluster_spec(text: str) -> ClusterInfo:
    """This node's place in the cluster: node 0 is the chief, workers follow in their pool's order."""
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        chief, workers = list(cluster["workerpool0"]), list(cluster.get("workerpool1") or [])
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"CLUSTER_SPEC is not a Vertex AI cluster spec ({type(err).__name__}: {err})") from None
    if task_type not in TRAINING_POOLS:
        raise ValueError(f"CLUSTER_SPEC task type {task_type!r} is not a training node (expected {TRAINING_POOLS})")
    if not chief:
        raise ValueError("CLUSTER_SPEC has no chief address in cluster.workerpool0")
    host, _, port = chief[0].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"CLUSTER_SPEC chief address {chief[0]!r} is not host:port")
    node_rank = task_index if task_type == "workerpool0" else len(chief) + task_index
    return ClusterInfo(num_nodes=len(chief) + len(workers), node_rank=node_rank, master_addr=host,
                       master_port=int(port))


def configure_cluster_env(environ: MutableMapping[str, str]) -> ClusterInfo | None:
    """Set MASTER_ADDR, MASTER_PORT and NODE_RANK for a multi-node job; None without CLUSTER_SPEC."""
    text = environ.get("CLUSTER_SPEC")
    if not text:
        return None
    info = parse_cluster_spec(text)
    if info.num_nodes > 1:
        environ["MASTER_ADDR"] = info.master_addr
        environ["MASTER_PORT"] = str(info.master_port)
        environ["NODE_RANK"] = str(info.node_rank)
        # Vertex's own WORLD_SIZE/RANK count nodes, not processes; Lightning sets the per-process ones.
        for name in ("WORLD_SIZE", "RANK"):
            environ.pop(name, None)
    return info


def resolve_secret_env(
    environ: MutableMapping[str, str], access_secret: Callable[[str], str] | None = None
) -> list[str]:
    """Replace every FLAVORFUSION_SECRET_<NAME>=<secret version> by NAME=<its value>; returns the names.

    A NAME that already has a value keeps it. Values are never logged.
    """
    refs = {key[len(SECRET_ENV_PREFIX):]: ref for key, ref in environ.items() if key.startswith(SECRET_ENV_PREFIX)}
    if not refs:
        return []
    access = access_secret or _secret_manager_accessor()
    resolved = []
    for name, ref in sorted(refs.items()):
        del environ[SECRET_ENV_PREFIX + name]  # DDP child processes inherit the value, not the reference
        if environ.get(name):
            continue
        try:
            environ[name] = access(ref)
        except Exception as err:
            raise RuntimeError(f"cannot read secret {ref} for {name}: {type(err).__name__}: {err}") from None
        resolved.append(name)
    log.info("environment variables set from Secret Manager: %s", ", ".join(resolved) or "none")
    return resolved


def _secret_manager_accessor() -> Callable[[str], str]:
    from google.cloud import secretmanager  # the `vertex` extra; only jobs that use secrets need it

    client = secretmanager.SecretManagerServiceClient()
    return lambda ref: client.access_secret_version(name=ref).payload.data.decode("utf-8")


def configure_from_vertex_env(
    environ: MutableMapping[str, str] | None = None, access_secret: Callable[[str], str] | None = None
) -> dict:
    """Resolve secret references and set the multi-node variables; {} outside Vertex.

    Returns what it found: num_nodes, node_rank, master_addr, master_port (with CLUSTER_SPEC) and
    `secrets` (the names it set).
    """
    environ = os.environ if environ is None else environ
    found: dict = {}
    secrets = resolve_secret_env(environ, access_secret)
    if secrets:
        found["secrets"] = secrets
    info = configure_cluster_env(environ)
    if info is not None:
        found.update(asdict(info))
        if info.num_nodes > 1:
            log.info("node %d of %d, master %s:%d", info.node_rank, info.num_nodes, info.master_addr,
                     info.master_port)
    return found


def on_vertex(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a Vertex AI job (see VERTEX_VARIABLES and AIP_*)."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in VERTEX_VARIABLES) or any(
        key.startswith(VERTEX_PREFIX) for key in environ)


def configure_on_vertex(
    environ: MutableMapping[str, str] | None = None, access_secret: Callable[[str], str] | None = None
) -> dict:
    """`configure_from_vertex_env` in a Vertex AI job; elsewhere nothing is read or changed ({}): a local run
    never reaches for Secret Manager, even with a FLAVORFUSION_SECRET_* variable in its environment."""
    environ = os.environ if environ is None else environ
    if not on_vertex(environ):
        return {}
    return configure_from_vertex_env(environ, access_secret)
