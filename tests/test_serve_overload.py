"""The server under abuse (`python -m flavorfusion.serve` in a subprocess): idle sockets cannot lock out real
clients, every refusal is JSON and counted under its route, the header limit holds, a secret has no way onto the
command line, query strings stay out of access logs, a client that leaves is not served, HEAD is answered wherever
GET is, errors say what to do, and the README's examples run as written."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led

from .conftest import ROOT, run_module
from .serving_helpers import Server, metric, request

REVIEWS = ["The butter chicken was rich and the naan fresh.", "Slow service on a Friday night but friendly staff."]


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer) -> str:
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path_factory.mktemp("export") / "model"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, export):
    """A small connection cap, so that a flood is cheap to make here; slow generation (64 tokens, one at a time) so
    that requests wait in the queue."""
    s = Server(tmp_path_factory.mktemp("overload"), [
        f"model.name_or_path={export}", "generation.max_new_tokens=64", "generation.min_new_tokens=64",
        "serve.max_batch_size=1", "serve.batch_timeout_ms=0", "serve.max_connections=24", "serve.max_queue=8",
        "serve.header_timeout_s=30", "serve.keep_alive_s=30", "serve.access_log=true"])
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()


def metrics_text(server) -> str:
    return request(server.url + "/metrics")[2].decode()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(1)
        return sock.recv(1) == b""
    except TimeoutError:  # nothing to read, still open
        return False
    except OSError:  # reset
        return True


def test_idle_sockets_are_closed_first_and_health_is_answered(server):
    before = metric(metrics_text(server), "flavorfusion_idle_connections_closed_total")
    idle = [connect(server) for _ in range(40)]  # more than serve.max_connections=24, never sending a byte
    try:
        time.sleep(1.0)  # older than the grace a new connection gets to send its first request
        for _ in range(5):
            status, _, raw = request(server.url + "/healthz")
            assert status == 200 and json.loads(raw) == {"status": "ok"}
        assert closed_by_server(idle[0])  # the longest idle went first, to make room for the health check
        assert not closed_by_server(idle[10])  # one closed per new connection, not more
        # the sockets beyond the cap, which came while every held one was still young, were answered 503 and closed
        status, headers, body = read_response(idle[-1])
        assert status == 503 and headers["retry-after"] == "1" and json.loads(body)["error"].startswith("busy")
        text = metrics_text(server)
        assert metric(text, "flavorfusion_idle_connections_closed_total") - before >= 1
        assert metric(text, "flavorfusion_requests_total", route="/healthz", status="200") >= 5
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_a_json_503_counted_unrouted(tmp_path, export):
    s = Server(tmp_path, [f"model.name_or_path={export}", "serve.max_connections=2", "serve.body_timeout_s=20"])
    busy = []
    try:
        s.wait_healthy()
        before = metric(request(s.url + "/metrics")[2].decode(), "flavorfusion_requests_total", route="unrouted",
                        status="503")
        for _ in range(2):  # each holds a request in progress: its body never finishes
            sock = connect(s)
            sock.sendall(b"POST /summarize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")
            busy.append(sock)
        time.sleep(0.3)
        with connect(s) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(sock)
        assert status == 503 and headers["content-type"] == "application/json" and headers["retry-after"] == "1"
        assert json.loads(body)["error"].startswith("busy: every connection is serving a request")
        for sock in busy:
            sock.close()
        time.sleep(0.3)
        after = metric(request(s.url + "/metrics")[2].decode(), "flavorfusion_requests_total", route="unrouted",
                       status="503")
        assert after - before == 1
    finally:
        for sock in busy:
            sock.close()
        s.stop()


def test_a_malformed_request_is_a_json_400_counted_unrouted(server):
    before = metric(metrics_text(server), "flavorfusion_requests_total", route="unrouted", status="400")
    with connect(server) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("the request is not valid HTTP/1.1")
    assert metric(metrics_text(server), "flavorfusion_requests_total", route="unrouted", status="400") - before == 1


def test_413_415_and_404_are_counted_under_their_route(server):
    text = metrics_text(server)
    counts = {(route, status): metric(text, "flavorfusion_requests_total", route=route, status=status)
              for route, status in (("/summarize", "415"), ("/summarize", "413"), ("unrouted", "404"))}
    status, _, raw = request(server.url + "/summarize", json.dumps({"reviews": REVIEWS}).encode(),
                             headers={"Content-Type": "text/plain"})
    assert status == 415 and "Content-Type: application/json" in json.loads(raw)["error"]
    assert request(server.url + "/summarize", {"reviews": ["x" * 2_000_000]})[0] == 413
    assert request(server.url + "/nope")[0] == 404
    text = metrics_text(server)
    for (route, code), value in counts.items():
        assert metric(text, "flavorfusion_requests_total", route=route, status=code) - value == 1, (route, code)


@pytest.mark.parametrize("size", [20_000, 64_000])
def test_headers_beyond_max_header_bytes_are_a_431_even_in_one_read(server, size):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        status, headers, body = read_response(sock)
    if status == 400:  # beyond h11's buffer (64 KiB): refused by the connection layer
        assert size >= 64_000
    else:
        assert status == 431 and "serve.max_header_bytes" in json.loads(body)["error"]


def test_a_header_within_the_limit_is_served(server):
    status, _, _ = request(server.url + "/healthz", headers={"X-Fine": "a" * 8000})
    assert status == 200


def test_head_is_answered_wherever_get_is(server):
    for path in ("/", "/app", "/healthz", "/metrics", "/variants", "/api/restaurants", "/api/about",
                 "/static/app.js", "/static/app.css", "/openapi.json"):
        status, headers, body = request(server.url + path, method="HEAD")
        assert status == 200 and body == b"", path


def test_a_client_that_leaves_is_dropped_before_generation_and_counted_499(server):
    text = metrics_text(server)
    before = {"499": metric(text, "flavorfusion_requests_total", route="/summarize", status="499"),
              "dropped": metric(text, "flavorfusion_abandoned_items_total", variant="trained"),
              "generated": metric(text, "flavorfusion_batch_size_sum", variant="trained")}
    busy = [threading.Thread(target=request, args=(server.url + "/summarize", {"reviews": REVIEWS}))
            for _ in range(3)]
    for thread in busy:  # they occupy the one-item batches for a while
        thread.start()
    time.sleep(0.05)
    body = json.dumps({"reviews": ["a client that leaves"]}).encode()
    with connect(server) as sock:
        sock.sendall(b"POST /summarize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.05)
    for thread in busy:
        thread.join()
    time.sleep(0.5)
    text = metrics_text(server)
    assert metric(text, "flavorfusion_requests_total", route="/summarize", status="499") - before["499"] == 1
    assert metric(text, "flavorfusion_abandoned_items_total", variant="trained") - before["dropped"] == 1
    assert metric(text, "flavorfusion_batch_size_sum", variant="trained") - before["generated"] == 3  # the busy ones


def test_errors_say_which_field_and_what_to_send(server):
    status, _, raw = request(server.url + "/summarize", b"{not json", method="POST")
    assert status == 400 and json.loads(raw)["error"].startswith("the body is not valid JSON (")
    assert 'send it like {"reviews": ["first review", "second review"]}' in json.loads(raw)["error"]
    status, _, raw = request(server.url + "/summarize", {"review": REVIEWS})
    message = json.loads(raw)["error"]
    assert status == 400 and message.startswith("reviews is missing; send it like") and "review is not a field" in message
    status, _, raw = request(server.url + "/summarize", {"reviews": "one text"})
    assert json.loads(raw)["error"].startswith("reviews must be a list; send it like")
    status, _, raw = request(server.url + "/summarize", {"reviews": []})
    assert json.loads(raw)["error"] == "reviews is an empty list: send at least one review"


def test_the_access_log_redacts_query_strings_and_the_start_line_names_the_app(server):
    secret = "my-private-review-text"
    assert request(server.url + f"/?text={secret}%7C%7C%7C%7C%7Cmore")[0] == 200
    time.sleep(0.2)
    log = server.output()
    assert secret not in log and '"GET /?<redacted> HTTP/1.1" 200' in log
    assert re.search(r"serving trained on http://127\.0\.0\.1:\d+: the app at http://127\.0\.0\.1:\d+/app", log)


@pytest.mark.parametrize("override", ["serve.api_key=abc-secret-123", "+serve.api_key=abc-secret-123",
                                      "++serve.token=abc-secret-123", "+logger.wandb.api_key=abc-secret-123"])
def test_a_secret_on_the_command_line_is_refused_before_anything_is_written(tmp_path, export, override):
    result = run_module("flavorfusion.serve", f"model.name_or_path={export}", override,
                        f"hydra.run.dir={tmp_path / 'run'}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert "a secret never goes on the command line" in lines[0] and "serve.api_key_env=" in lines[0]
    assert "+serve.api_key" not in lines[0]  # no hint that leads to a server without a key
    written = [p for p in tmp_path.rglob("*") if p.is_file() and b"abc-secret-123" in p.read_bytes()]
    assert not (tmp_path / "run").exists() and written == []


def test_the_readme_serving_examples_run_as_written(tmp_path, export):
    """Every `curl` line of the README's serving section, with the README's port replaced by the test server's."""
    if not shutil.which("curl"):
        pytest.fail("curl is needed to run the README's examples")
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Serving and the app"):]
    section = section[:section.index("\n## ", 5)]
    commands = [line.split("  #")[0].strip() for line in section.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 3
    s = Server(tmp_path, [f"model.name_or_path={export}", "generation.max_new_tokens=8",
                          "generation.min_new_tokens=4"])
    try:
        s.wait_healthy()
        for command in commands:
            local = command.replace("8080", str(s.port)).replace("localhost", "127.0.0.1")
            done = subprocess.run(["bash", "-c", local + " --fail --silent --show-error --max-time 60"],
                                  capture_output=True, text=True, cwd=Path(tmp_path))
            assert done.returncode == 0, (command, done.stderr)
            assert done.stdout.strip(), command
    finally:
        s.stop()
