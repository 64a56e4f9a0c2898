"""The real server (`python -m flavorfusion.serve` in a subprocess) against inputs and clients that used to break
it: one bad request in a batch, malformed JSON, unknown fields, slow and vanishing clients, a broken variant,
cross-origin browsers, and a required API key."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led

from .serving_helpers import Server, metric, request

REVIEWS = ["The butter chicken was rich and the naan fresh.", "Slow service on a Friday night but friendly staff."]
KEY = "s3cret-key-for-tests"
ORIGIN = "https://ok.example"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("exports")
    good = save_pretrained(build_tiny_led(tokenizer), tokenizer, str(root / "model"))
    # an embedding table of 16 rows under a tokenizer of 1000 ids: generation fails inside the model for any review
    # (the server caps lengths at the model's positions, so those no longer break a model)
    broken_model = build_tiny_led(tokenizer)
    broken_model.resize_token_embeddings(16)
    broken = save_pretrained(broken_model, tokenizer, str(root / "broken"))
    return good, broken


@pytest.fixture(scope="module")
def server(tmp_path_factory, exports):
    """Defaults for security (no CORS, no key); a short body timeout; a broken variant beside the good one."""
    good, broken = exports
    s = Server(tmp_path_factory.mktemp("hard"), [
        f"model.name_or_path={good}", f"+serve.variants.broken={broken}", "generation.max_new_tokens=12",
        "generation.min_new_tokens=6", "serve.max_batch_size=16", "serve.batch_timeout_ms=300",
        "serve.max_chars=1000000", "serve.body_timeout_s=1", "serve.header_timeout_s=2"])
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()


def concurrently(url: str, bodies: list, headers: dict | None = None) -> list[tuple[int, dict]]:
    """(status, JSON answer) of each body, all sent at once (so they share batches)."""
    barrier = threading.Barrier(len(bodies))

    def one(body):
        barrier.wait()
        status, _, raw = request(url, body, method="POST", timeout=120, headers=headers)
        return status, json.loads(raw)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_a_request_beyond_the_model_limit_is_truncated_and_its_batch_is_served(server):
    # 40 reviews of ~3000 characters: far beyond the tiny model's 1024 encoder positions (data.max_source_length
    # is 4096), so before truncation to the model's limit this failed inside the batch
    long = {"reviews": [("Tasty curry and warm naan, " * 110)[:3000] for _ in range(40)]}
    results = concurrently(server.url + "/summarize", [{"reviews": REVIEWS}] * 5 + [long] + [{"reviews": REVIEWS}] * 5)
    assert [s for s, _ in results] == [200] * 11, results
    assert all(a["summary"] for _, a in results)


def test_bad_bodies_are_400_and_the_rest_of_their_batch_is_200(server):
    before = metric(request(server.url + "/metrics")[2].decode(), "flavorfusion_batch_size_count", variant="trained")
    bad = {
        "lone surrogate": b'{"reviews": ["bad \\ud800 text", "fine"]}',
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "huge integer": b'{"reviews": ["a"], "variant": ' + b"9" * 5000 + b"}",
        "nested huge integer": b'{"reviews": [' + b"1" * 5000 + b"]}",
    }
    bodies = [{"reviews": REVIEWS}] * 4 + list(bad.values()) + [{"reviews": REVIEWS}] * 4
    results = concurrently(server.url + "/summarize", bodies)
    statuses = [s for s, _ in results]
    assert statuses == [200] * 4 + [400] * len(bad) + [200] * 4, results
    for (_, answer), name in zip(results[4:4 + len(bad)], bad, strict=True):
        assert list(answer) == ["error"] and "\n" not in answer["error"], (name, answer)
    assert "not valid text" in results[4][1]["error"]
    after = metric(request(server.url + "/metrics")[2].decode(), "flavorfusion_batch_size_count", variant="trained")
    assert after - before < 8  # the good ones were batched together


@pytest.mark.parametrize("body", [{"reviews": REVIEWS, "max_new_tokens": -1}, {"reviews": REVIEWS, "Variant": "x"}])
def test_an_unknown_field_is_a_one_line_400(server, body):
    status, _, raw = request(server.url + "/summarize", body)
    answer = json.loads(raw)
    unknown = next(iter(body.keys() - {"reviews"}))
    assert status == 400 and list(answer) == ["error"]
    # the field, what is wrong with it, and what a body looks like
    assert answer["error"].startswith(f"{unknown} is not a field of this request; send it like {{\"reviews\": [")


def test_unknown_instance_field_and_parameter_are_400(server):
    for body in ({"instances": [{"reviews": REVIEWS, "extra": 1}]},
                 {"instances": [{"reviews": REVIEWS}], "parameters": {"temperature": 2}}):
        assert request(server.url + "/predict", body)[0] == 400


def raw_connection(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_slow_body_is_timed_out_with_408(server):
    with raw_connection(server) as sock:
        sock.sendall(b"POST /summarize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"reviews\": [")
        start = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error"' in answer and time.monotonic() - start < 5


def test_slow_headers_are_cut_off(server):
    """A byte every half second keeps a connection busy but must not keep it open past serve.header_timeout_s=2."""
    import select

    with raw_connection(server) as sock:
        sock.sendall(b"POST /summarize HTTP/1.1\r\nHost: x\r\n")
        start, closed = time.monotonic(), False
        while not closed and time.monotonic() - start < 10:
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
            time.sleep(0.5)
            if select.select([sock], [], [], 0)[0]:
                try:
                    closed = closed or sock.recv(1) == b""
                except OSError:
                    closed = True
        assert closed and time.monotonic() - start < 6


def test_a_client_that_disconnects_mid_body_is_one_info_line(server):
    before = server.output()
    with raw_connection(server) as sock:
        sock.sendall(b"POST /summarize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"reviews\": [")
        time.sleep(0.2)
    time.sleep(0.5)
    new = server.output()[len(before):]
    lines = [line for line in new.splitlines() if line.strip()]
    assert len(lines) == 1 and "disconnected before its body was received" in lines[0], new
    assert "Traceback" not in new
    text = request(server.url + "/metrics")[2].decode()
    assert metric(text, "flavorfusion_requests_total", route="/summarize", status="499") >= 1


def test_a_broken_variant_is_a_json_500_counted_in_metrics(server):
    before = request(server.url + "/metrics")[2].decode()
    results = concurrently(server.url + "/summarize", [{"reviews": REVIEWS, "variant": "broken"}] * 2
                           + [{"reviews": REVIEWS}] * 2)
    assert [s for s, _ in results] == [500, 500, 200, 200], results
    assert "generation failed in variant broken" in results[0][1]["error"]
    after = request(server.url + "/metrics")[2].decode()
    assert (metric(after, "flavorfusion_requests_total", route="/summarize", status="500")
            - metric(before, "flavorfusion_requests_total", route="/summarize", status="500")) == 2
    assert metric(after, "flavorfusion_request_latency_seconds_count", route="/summarize", status="500") >= 2
    assert request(server.url + "/healthz")[0] == 200  # the server goes on


def test_cors_refused_by_default_and_text_plain_needs_json(server):
    preflight = request(server.url + "/summarize", b"", method="OPTIONS",
                        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "content-type"})
    assert "Access-Control-Allow-Origin" not in preflight[1]
    status, headers, _ = request(server.url + "/summarize", {"reviews": REVIEWS}, headers={"Origin": ORIGIN})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    # a "simple" cross-site request (no preflight) must not be served
    status, _, raw = request(server.url + "/summarize", json.dumps({"reviews": REVIEWS}).encode(),
                             headers={"Content-Type": "text/plain", "Origin": ORIGIN})
    assert status == 415 and "application/json" in json.loads(raw)["error"]


def test_security_headers_openapi_and_no_paths(server, exports):
    status, headers, _ = request(server.url + "/app")
    assert status == 200 and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and "'unsafe-inline'" not in headers["Content-Security-Policy"]
    status, _, raw = request(server.url + "/openapi.json")
    spec = json.loads(raw)
    assert status == 200 and {"/summarize", "/predict", "/variants"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["SummarizeRequest"]["additionalProperties"] is False
    for path, body in (("/summarize", {"reviews": REVIEWS}), ("/variants", None)):
        raw = request(server.url + path, body, method="POST" if body else "GET")[2].decode()
        assert exports[0] not in raw and "/tmp" not in raw, raw
    answer = json.loads(request(server.url + "/summarize", {"reviews": REVIEWS})[2])
    assert answer["model"]["name"] == "model" and len(answer["model"]["sha256"]) == 64


def test_cors_allowed_when_configured_and_api_key_required_when_set(tmp_path, exports):
    s = Server(tmp_path, [f"model.name_or_path={exports[0]}", "generation.max_new_tokens=4",
                          f"serve.cors_origins=[{ORIGIN}]", "serve.api_key_env=FF_TEST_KEY"],
               env={"FF_TEST_KEY": KEY})
    try:
        s.wait_healthy()
        assert KEY not in " ".join(s.process.args)  # never on the command line
        preflight = request(s.url + "/summarize", b"", method="OPTIONS",
                            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "content-type,authorization"})
        assert preflight[0] == 200 and preflight[1]["Access-Control-Allow-Origin"] == ORIGIN
        other = request(s.url + "/summarize", b"", method="OPTIONS",
                        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert other[1].get("Access-Control-Allow-Origin") != "https://evil.example"

        status, headers, raw = request(s.url + "/summarize", {"reviews": REVIEWS})
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and "API key" in json.loads(raw)["error"]
        assert request(s.url + "/summarize", {"reviews": REVIEWS}, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(s.url + "/predict", {"instances": [{"reviews": REVIEWS}]})[0] == 401
        assert request(s.url + "/?text=good|||||food")[0] == 401
        status, headers, _ = request(s.url + "/summarize", {"reviews": REVIEWS},
                                     headers={"Authorization": f"Bearer {KEY}", "Origin": ORIGIN})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
        assert request(s.url + "/predict", {"instances": [{"reviews": REVIEWS}]}, headers={"X-API-Key": KEY})[0] == 200
        assert request(s.url + "/app")[0] == request(s.url + "/healthz")[0] == 200  # open
    finally:
        s.stop()


def test_an_api_key_env_that_is_not_set_refuses_to_start(tmp_path, exports):
    s = Server(tmp_path, [f"model.name_or_path={exports[0]}", "serve.api_key_env=FF_UNSET_KEY"])
    try:
        assert s.process.wait(60) == 2
        assert "serve.api_key_env=FF_UNSET_KEY" in s.output() and "Traceback" not in s.output()
    finally:
        s.stop()
