"""Vertex AI jobs: validated settings, each job's plan (name, output dir, args), its CustomJob, the backend.

Google libraries are imported inside functions: Hydra imports every module of a plugin at startup.
"""

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flavorfusion.errors import ConfigError, DataError, FlavorFusionError
from flavorfusion.tracking import sweep_group_name
from flavorfusion.vertex_env import SECRET_ENV_PREFIX

from ._jobs import ComposedJob, job_hydra_config, split_config
from ._submission import FAILED, PENDING, RUNNING, SUCCEEDED, JobState
from .config import VertexLauncherConf

log = logging.getLogger(__name__)

# hydra overrides that configure this launch, not the job; the job runs as a single run in its container
_LAUNCH_ONLY_HYDRA_KEYS = ("hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper", "hydra.sweep",
                           "hydra.run", "hydra.mode", "hydra.job.id", "hydra.job.num")

def check_command_matches_entry_point(command: list[str], main_module: str | None) -> None:
    """Started from flavorfusion.evaluate, a sweep must not run flavorfusion.train on the GPUs (or vice versa)."""
    if main_module and main_module.startswith("flavorfusion.") and main_module not in command:
        raise ConfigError(f"hydra.launcher.command runs {' '.join(command)}, but this sweep was started from "
                          f"{main_module}; set hydra.launcher.command=[python,-m,{main_module}]")


def read_env_values(names: list[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of the `env` names from this shell; an unset one fails before anything is submitted."""
    environ = os.environ if environ is None else environ
    missing = [name for name in names if name not in environ]
    if missing:
        raise ConfigError(f"hydra.launcher.env names {', '.join(missing)}, not set in this environment")
    return {name: environ[name] for name in names}


# ------------------------------------------------------------------------------ train's start-up checks

TRAIN_MODULE = "flavorfusion.train"


def runs_train(command: list[str], entry_point: str | None) -> bool:
    """A sweep of flavorfusion.train whose jobs run flavorfusion.train: its jobs get train's start-up checks."""
    return entry_point == TRAIN_MODULE and TRAIN_MODULE in command


def check_jobs_as_train_does(jobs: list[ComposedJob]) -> None:
    """Run on every job's config the checks flavorfusion.train runs at start-up (flavorfusion.checks.
    validate_train, data.path included); one failing job fails the sweep before anything is written or
    submitted, with one line naming every failing job and its error."""
    listed: dict[str, str | None] = {}  # data.path -> its error: each distinct path is listed once
    failures = [(job, error) for job in jobs if (error := train_check_error(job, listed))]
    if not failures:
        return
    labels = job_labels(jobs)
    by_error: dict[str, list[str]] = {}
    for job, error in failures:
        by_error.setdefault(error, []).append(f"#{job.num} ({labels[job.num]})")
    verb = "fails" if len(failures) == 1 else "fail"
    raise ConfigError(f"{len(failures)} of {len(jobs)} jobs {verb} the checks train runs at start-up; nothing "
                      "submitted: " + "; ".join(f"{', '.join(names)}: {error}" for error, names in by_error.items()))


def train_check_error(job: ComposedJob, listed: dict[str, str | None]) -> str | None:
    """The one-line error validate_train gives the job's own config (no `hydra` node; `${hydra:...}` resolves
    to the job's values), or None. The job's output paths are the ones it has before the plan rewrites them."""
    from flavorfusion.checks import validate_train

    task_cfg, _ = split_config(job.sweep_config)
    with job_hydra_config(job.sweep_config):
        try:
            validate_train(task_cfg, check_files=False)
            path = task_cfg.data.path
            path = OmegaConf.to_container(path, resolve=True) if OmegaConf.is_config(path) else path
            key = repr(path)
            if key not in listed:
                listed[key] = data_files_error(task_cfg.data, path)
            return listed[key]
        except FlavorFusionError as err:
            return one_line(str(err))
        except Exception as err:  # e.g. a value of the wrong type: the job would fail the same way at start-up
            log.debug("checking job %d", job.num, exc_info=True)
            return one_line(f"{type(err).__name__}: {err}")


def data_files_error(data: DictConfig, path: str | list[str]) -> str | None:
    """Whether `data.path` matches files, as train checks it (fsspec: local, gs:// with your credentials)."""
    from flavorfusion.checks import check_data_files

    patterns = [path] if isinstance(path, str) else list(path)
    on_gcs = [p for p in patterns if str(p).startswith(("gs://", "gcs://"))]
    if on_gcs:  # without credentials gcsfs would retry anonymously for a minute, logging tracebacks
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default()
        except DefaultCredentialsError:
            return (f"data.path: cannot list {on_gcs[0]}: no Google Cloud credentials (run `gcloud auth "
                    "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS)")
    try:
        check_data_files(data)
    except DataError as err:
        return one_line(str(err))
    except Exception as err:  # gcsfs: access denied, no network, a bucket that does not exist, ...
        return one_line(f"data.path: cannot list {', '.join(map(str, patterns))}: {type(err).__name__}: {err}")
    return None


def job_labels(jobs: list[ComposedJob]) -> dict[int, str]:
    """Each job's overrides that tell it from the others (all of them when none differ)."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    return {job.num: " ".join(o for o in job.overrides if o not in shared) or " ".join(job.overrides)
            or "no overrides" for job in jobs}


def one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text


# ---------------------------------------------------------------------------------------------- job plans


@dataclass
class VertexJob:
    """What one Vertex custom job runs and where it writes."""

    composed: ComposedJob
    display_name: str
    output_uri: str  # gs://bucket/... as this machine sees it (metrics.json is read back from here)
    args: list[str]  # the job sees output_uri as /gcs/bucket/... (container_path)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def num(self) -> int:
        return self.composed.num


def sweep_name(config: DictConfig) -> str:
    """W&B group, else task name, else Hydra's job name: `sweep_prune`, `quickstart`, `train`."""
    for key in ("group", "task_name", "hydra.job.name"):
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        if value:
            return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-") or "sweep"
    return "sweep"


def wandb_group(config: DictConfig) -> str:
    """The W&B group a job without one gets: `<job name>/<sweep dir name>`, as flavorfusion.tracking gives
    the jobs of a local `-m` sweep (a Vertex job runs as a single run, so it cannot work it out itself)."""
    return sweep_group_name(config.hydra.job.name, OmegaConf.select(config, "hydra.sweep.dir"))


def container_path(uri: str) -> str:
    """gs://bucket/dir -> /gcs/bucket/dir: where Vertex mounts Cloud Storage inside the container."""
    return "/gcs/" + uri[len("gs://"):] if uri.startswith("gs://") else uri


def overrides_digest(overrides: list[str]) -> str:
    return hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:6]


def plan_job(composed: ComposedJob, settings: "VertexLauncherConf", sweep: str, hydra_overrides: list[str],
             group: str) -> VertexJob:
    """Display name, output dir and container arguments of one job; `group` is for jobs without a W&B group."""
    output_uri = f"{settings.base_output_dir}/{sweep}/{settings.run_id}/{composed.num}"
    job_dir = container_path(output_uri)
    args = [*composed.overrides, *forwarded_hydra_overrides(hydra_overrides), override("hydra.run.dir", job_dir)]
    args += app_overrides(composed.sweep_config, composed.overrides, settings, job_dir, group)
    labels = {**settings.labels, "flavorfusion-sweep": label_value(sweep),
              "flavorfusion-run": label_value(settings.run_id), "flavorfusion-job": str(composed.num)}
    name = f"{sweep}-{settings.run_id}-{composed.num:03d}-{overrides_digest(composed.overrides)}"
    return VertexJob(composed, name[:128], output_uri, args, labels)


def forwarded_hydra_overrides(hydra_overrides: list[str]) -> list[str]:
    """Hydra overrides the job should see too (e.g. hydra.verbose), minus those that configure this launch."""
    kept = []
    for item in hydra_overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if not any(key == k or key.startswith(k + ".") for k in _LAUNCH_ONLY_HYDRA_KEYS):
            kept.append(item)
    return kept


def app_overrides(cfg: DictConfig, user_overrides: list[str], settings: "VertexLauncherConf", job_dir: str,
                  group: str) -> list[str]:
    """Overrides for the keys this app has: output dir, resume, W&B group, trainer devices and nodes.

    A key the user overrode keeps the user's value; a key the app lacks is left alone.
    """
    user_keys = {item.split("=", 1)[0].lstrip("+~") for item in user_overrides}
    extra = []

    def add(key: str, value: Any) -> None:
        if key not in user_keys and _has_key(cfg, key):
            extra.append(override(key, value))

    add("paths.output_dir", job_dir)
    if _value(cfg, "ckpt_path") is None:
        add("ckpt_path", "last")  # a restarted spot job resumes from <output dir>/checkpoints/last.ckpt
    if _value(cfg, "group") is None:
        add("group", group)
    if settings.uses_gpus and settings.accelerator_count > 1:
        add("trainer.devices", settings.accelerator_count)
    if settings.replica_count > 1:
        add("trainer.num_nodes", settings.replica_count)
    if (settings.uses_gpus and settings.accelerator_count > 1) or settings.replica_count > 1:
        add("trainer.strategy", "ddp")
    return extra


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def override(key: str, value: Any) -> str:
    """key=value, quoted when the value holds characters Hydra's override grammar treats specially."""
    text = str(value)
    if re.fullmatch(r"[\w./:@+-]*", text):
        return f"{key}={text}"
    return f"{key}='" + text.replace("'", "\\'") + "'"


def label_value(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower())[:63]


# -------------------------------------------------------------------------------------------- CustomJobs


def build_custom_job(job: VertexJob, settings: "VertexLauncherConf", env_values: Mapping[str, str] | None = None):
    """The CustomJob proto. Without `env_values`, env vars carry their names only (for files and logs)."""
    from google.cloud.aiplatform_v1 import types
    from google.protobuf import duration_pb2

    machine = types.MachineSpec(machine_type=settings.machine_type)
    if settings.uses_gpus:
        if settings.accelerator_type not in types.AcceleratorType.__members__:
            raise ConfigError(f"hydra.launcher.accelerator_type {settings.accelerator_type!r} is not a Vertex "
                              "accelerator (e.g. NVIDIA_L4, NVIDIA_TESLA_T4, NVIDIA_A100_80GB)")
        machine.accelerator_type = types.AcceleratorType[settings.accelerator_type]
        machine.accelerator_count = settings.accelerator_count
    env = [types.EnvVar(name=name, value=env_values[name]) if env_values else types.EnvVar(name=name)
           for name in settings.env]
    env += [types.EnvVar(name=SECRET_ENV_PREFIX + name, value=ref) for name, ref in settings.secrets.items()]
    container = types.ContainerSpec(image_uri=settings.image_uri, command=settings.command, args=job.args, env=env)
    pools = [types.WorkerPoolSpec(machine_spec=machine, replica_count=1, container_spec=container)]
    if settings.replica_count > 1:  # workerpool1: the other nodes, same machine and container
        pools.append(types.WorkerPoolSpec(machine_spec=machine, replica_count=settings.replica_count - 1,
                                          container_spec=container))
    spec = types.CustomJobSpec(worker_pool_specs=pools)
    scheduling = types.Scheduling()
    if settings.replica_count > 1:  # a restarted node rejoins only if every node restarts (DDP rendezvous)
        scheduling.restart_job_on_worker_restart = True
    if settings.timeout_s:
        scheduling.timeout = duration_pb2.Duration(seconds=settings.timeout_s)
    if settings.spot:
        scheduling.strategy = types.Scheduling.Strategy.SPOT
    if scheduling != types.Scheduling():
        spec.scheduling = scheduling
    if settings.service_account:
        spec.service_account = settings.service_account
    if job.output_uri.startswith("gs://"):
        # Vertex then sets AIP_MODEL_DIR / AIP_CHECKPOINT_DIR to <output>/model and <output>/checkpoints,
        # the same places paths.export_dir and paths.checkpoint_dir point at
        spec.base_output_directory = types.GcsDestination(output_uri_prefix=job.output_uri)
    return types.CustomJob(display_name=job.display_name, job_spec=spec, labels=job.labels)


def gcloud_config(custom_job) -> dict:
    """The job spec as `gcloud ai custom-jobs create --config` reads it (camelCase JSON names)."""
    from google.cloud.aiplatform_v1 import types

    return types.CustomJobSpec.to_dict(custom_job.job_spec, preserving_proto_field_name=False,
                                       use_integers_for_enums=False, including_default_value_fields=False)


def write_job_spec(job: VertexJob, settings: "VertexLauncherConf", custom_job) -> str:
    """<job dir>/custom_job.yaml, with the gcloud command that submits it; env values are left out."""
    import yaml

    labels = ",".join(f"{k}={v}" for k, v in custom_job.labels.items())
    header = [
        f"# Vertex AI custom job {job.display_name} (job {job.num} of sweep run {settings.run_id})",
        "# submit it by hand with:",
        f"#   gcloud ai custom-jobs create --project={settings.project} --region={settings.region} \\",
        f"#     --display-name={job.display_name} --labels={labels} --config=custom_job.yaml",
    ]
    if settings.env:
        header.append(f"# values of env vars are not written here; the launcher reads them from your shell: "
                      f"{', '.join(settings.env)}")
    path = os.path.join(job.composed.local_dir, "custom_job.yaml")
    os.makedirs(job.composed.local_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n")
        yaml.safe_dump(gcloud_config(custom_job), f, sort_keys=False, width=1000)
    return path


_SUCCEEDED_STATES = {"JOB_STATE_SUCCEEDED"}
_FAILED_STATES = {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
_WAITING_STATES = {"JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_PAUSED"}


def job_state(custom_job) -> JobState:
    """Vertex's JobState as the engine's: PENDING, RUNNING, SUCCEEDED, or FAILED with Vertex's message."""
    name = custom_job.state.name
    if name in _SUCCEEDED_STATES:
        return JobState(SUCCEEDED)
    if name in _FAILED_STATES:
        message = custom_job.error.message if custom_job.error and custom_job.error.message else ""
        return JobState(FAILED, message or name.removeprefix("JOB_STATE_").lower())
    return JobState(PENDING if name in _WAITING_STATES else RUNNING)


class VertexBackend:
    """The engine's backend for Vertex AI; every call to Google goes through `client` (VertexJobClient)."""

    def __init__(self, client, settings: "VertexLauncherConf", env_values: Mapping[str, str]):
        self.client = client
        self.settings = settings
        self._env_values = dict(env_values)

    def submit(self, job: VertexJob) -> str:
        return self.client.submit(build_custom_job(job, self.settings, self._env_values))

    def get(self, job_id: str) -> JobState:
        return job_state(self.client.get(job_id))

    def cancel(self, job_id: str) -> None:
        self.client.cancel(job_id)

    def result(self, job: VertexJob, job_id: str) -> Any:
        metrics = self.client.read_metrics(job.output_uri)
        if self.settings.return_metric is None:
            return metrics
        if self.settings.return_metric not in metrics:
            raise KeyError(f"{self.settings.return_metric} is not in {job.output_uri}/metrics.json")
        return metrics[self.settings.return_metric]
