"""Starting `python -m flavorfusion.serve` for tests: a free port, its own process group, stopped in a finalizer."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body=None, method: str | None = None, timeout: float = 30, headers: dict | None = None):
    """(status, headers, body bytes) of one HTTP request; 4xx/5xx are answers, not exceptions."""
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


class Server:
    def __init__(self, tmp_path, overrides: list[str], env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp_path / "server.log", "wb")  # noqa: SIM115  (closed in stop)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AIP_") and k != "PORT"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flavorfusion.serve", f"serve.port={self.port}", f"hydra.run.dir={tmp_path}/run",
             *overrides], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**clean, "HYDRA_FULL_ERROR": "0", **(env or {})})
        self.health_answers: list = []

    def wait_healthy(self, route: str = "/healthz", timeout: float = 90) -> list:
        """Poll health from process start; returns the answers seen (status codes or "refused") up to 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}): {self.output()[-3000:]}")
            try:
                status = request(self.url + route, timeout=5)[0]
            except (urllib.error.URLError, ConnectionError):
                status = "refused"
            if not self.health_answers or self.health_answers[-1] != status:
                self.health_answers.append(status)
            if status == 200:
                return self.health_answers
            time.sleep(0.05)
        raise AssertionError(f"not healthy after {timeout} s: {self.health_answers} {self.output()[-3000:]}")

    def output(self) -> str:
        self.log.flush()
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{wanted}}}" if wanted else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0
