"""Config of the `vertex` and `vertex_local` launchers (`hydra.launcher.*`): the one definition of their settings,
typed at compose time by Hydra and checked, all at once, by `VertexLauncherConf.checked` before any job is submitted."""

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from flavorfusion.errors import ConfigError

log = logging.getLogger(__name__)

REQUIRED_KEYS = {
    "project": "the GCP project jobs run in",
    "image_uri": "the training image (launchers/build_and_push.sh prints it)",
    "staging_bucket": "a gs:// bucket for the jobs' outputs",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def parse_timeout(value: Any) -> int | None:
    """Seconds from `3600`, `90m`, `24h` or `7d`; null means Vertex's default (7 days)."""
    if value is None or str(value).strip() in ("", "null", "None"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
    if not match or int(match[1]) == 0:
        raise ConfigError(f"hydra.launcher.timeout {value!r}: give seconds or a number with s, m, h or d (e.g. 24h)")
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def secret_version(ref: str, project: str) -> str:
    """`wandb-api-key` -> projects/<project>/secrets/wandb-api-key/versions/latest; full names kept."""
    if ref.startswith("projects/"):
        return ref if "/versions/" in ref else f"{ref.rstrip('/')}/versions/latest"
    return f"projects/{project}/secrets/{ref}/versions/latest"



@dataclass
class VertexLauncherConf:
    _target_: str = "hydra_plugins.vertex_launcher.launcher.VertexLauncher"

    # where jobs run; project, image_uri and staging_bucket have no default and are checked before submitting
    project: str | None = None
    region: str = "us-central1"
    machine_type: str = "g2-standard-4"
    # null (or accelerator_count=0) runs on CPU only
    accelerator_type: str | None = "NVIDIA_L4"
    # > 1 sets trainer.devices and trainer.strategy=ddp for the job
    accelerator_count: int = 1
    # > 1 is a multi-node job (one chief + replica_count-1 workers); sets trainer.num_nodes
    replica_count: int = 1
    image_uri: str | None = None
    # what the container runs; the job's overrides are appended as arguments
    command: list[str] = field(default_factory=lambda: ["python", "-m", "flavorfusion.train"])
    service_account: str | None = None
    staging_bucket: str | None = None
    # gs:// root of every job's output dir: <base_output_dir>/<sweep>/<run_id>/<job number>;
    # null means <staging_bucket>/runs
    base_output_dir: str | None = None
    # names the sweep run in output paths and display names; null means the launch time.
    # Launch again with an earlier run_id to resume that sweep's jobs from their last checkpoints.
    run_id: str | None = None
    # Spot VMs: cheaper, may be preempted; jobs resume from <output dir>/checkpoints/last.ckpt
    spot: bool = False
    # a job running longer is stopped: seconds, or a number with s/m/h/d
    timeout: str | None = "24h"
    # names of environment variables whose values (read from this shell at submit time) the job gets;
    # the values never go into args, logs or files on disk
    env: list[str] = field(default_factory=list)
    # env var name -> Secret Manager secret (`wandb-api-key` or projects/P/secrets/S/versions/V); the job
    # resolves it at start (flavorfusion.vertex_env), so only the reference leaves this machine
    secrets: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # longest wait in seconds between two polls of the jobs' states (the first polls come sooner)
    poll_interval: float = 60.0
    # write each job's spec (gcloud ai custom-jobs create --config form) into the sweep dir; submit nothing
    dry_run: bool = False
    # a metric name (e.g. val/rougeL) makes that float the job's return value, for optimizing sweepers;
    # null returns the job's whole metrics.json dict
    return_metric: str | None = None

    @property
    def uses_gpus(self) -> bool:
        return bool(self.accelerator_type) and self.accelerator_count > 0

    @property
    def timeout_s(self) -> int | None:
        return parse_timeout(self.timeout)

    def checked(self, default_run_id: str) -> "VertexLauncherConf":
        """These settings checked (every problem found before the first job is submitted), with the defaults that
        depend on others filled in: base_output_dir, run_id, and secrets as full Secret Manager versions."""
        for key, what in REQUIRED_KEYS.items():
            if not getattr(self, key):
                raise ConfigError(f"hydra.launcher.{key} is required: {what}")
        for key in ("staging_bucket", "base_output_dir"):
            value = getattr(self, key)
            if value and not str(value).startswith("gs://"):
                log.warning("hydra.launcher.%s=%s is not a gs:// URI: Vertex jobs cannot write there", key, value)
        if self.accelerator_count < 0:
            raise ConfigError("hydra.launcher.accelerator_count must be at least 0")
        if self.replica_count < 1:
            raise ConfigError("hydra.launcher.replica_count must be at least 1")
        if self.poll_interval <= 0:
            raise ConfigError("hydra.launcher.poll_interval must be positive")
        if not self.command:
            raise ConfigError("hydra.launcher.command must name what the container runs")
        for name in [*self.env, *self.secrets]:
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(f"hydra.launcher.env: {name!r} is not an environment variable name")
        for name in sorted(set(self.env) & set(self.secrets)):
            raise ConfigError(f"hydra.launcher.env and hydra.launcher.secrets both set {name}; keep one")
        for key, value in self.labels.items():
            if not _LABEL.fullmatch(key) or (value and not re.fullmatch(r"[a-z0-9_-]{1,63}", value)):
                raise ConfigError(f"hydra.launcher.labels.{key}: keys and values take lowercase letters, "
                                  "digits, _ and - (63 at most; keys start with a letter)")
        run_id = str(self.run_id or default_run_id)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id):
            raise ConfigError(f"hydra.launcher.run_id {run_id!r}: use letters, digits, '.', '_' and '-'")
        self.timeout_s  # noqa: B018  (a malformed timeout fails here, not at submit time)
        return dataclasses.replace(
            self, run_id=run_id,
            base_output_dir=str(self.base_output_dir or f"{str(self.staging_bucket).rstrip('/')}/runs").rstrip("/"),
            secrets={k: secret_version(v, str(self.project)) for k, v in self.secrets.items()})


@dataclass
class VertexLocalLauncherConf(VertexLauncherConf):
    """Same submit/poll machinery, but each job runs in a local forked process (tests, debugging).

    The Vertex keys are accepted and ignored, so a config written for `vertex` also runs here.
    """

    _target_: str = "hydra_plugins.vertex_launcher.launcher.VertexLocalLauncher"
    poll_interval: float = 0.5
    # jobs running at once on this machine; the others wait in the local queue
    max_parallel: int = 1


ConfigStore.instance().store(
    group="hydra/launcher", name="vertex", node=VertexLauncherConf, provider="vertex_launcher"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="vertex_local", node=VertexLocalLauncherConf, provider="vertex_launcher"
)
