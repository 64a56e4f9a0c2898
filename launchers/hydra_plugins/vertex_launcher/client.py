"""The one class that talks to Google Cloud. Tests replace it (or subclass it) and nothing else."""

import json
from typing import Any

from flavorfusion.errors import ConfigError


class VertexJobClient:
    """submit / get / cancel Vertex AI custom jobs, and read a job's metrics.json from Cloud Storage."""

    def __init__(self, project: str, region: str):
        self.project = project
        self.region = region
        self.parent = f"projects/{project}/locations/{region}"
        self._api: Any = None

    def connect(self) -> None:
        """Create the API client; missing credentials fail here, before the first job is submitted."""
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import aiplatform_v1

        try:
            self._api = aiplatform_v1.JobServiceClient(
                client_options={"api_endpoint": f"{self.region}-aiplatform.googleapis.com"}
            )
        except DefaultCredentialsError:
            raise ConfigError("no Google Cloud credentials: run `gcloud auth application-default login` "
                              "(or set GOOGLE_APPLICATION_CREDENTIALS)") from None

    def submit(self, custom_job: Any) -> str:
        """Create the job; returns its resource name (projects/.../customJobs/<id>)."""
        return self._api.create_custom_job(parent=self.parent, custom_job=custom_job).name

    def get(self, name: str) -> Any:
        """The job's current CustomJob (state, error)."""
        return self._api.get_custom_job(name=name)

    def cancel(self, name: str) -> None:
        self._api.cancel_custom_job(name=name)

    def read_metrics(self, output_uri: str) -> dict:
        """The flat metrics dict a finished job wrote to <output_uri>/metrics.json (gs:// via gcsfs)."""
        import fsspec

        with fsspec.open(f"{output_uri.rstrip('/')}/metrics.json", "r") as f:
            return json.load(f)
