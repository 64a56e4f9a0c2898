"""`python -m flavorfusion.serve`: the real server in a subprocess (its own process group, a free port, a tiny LED
export made here): the three request forms, health from process start, every bad input as a one-line 4xx, one
model load across many requests, dynamic batching under a burst, and 503 + Retry-After when the queue is full.
The batcher and health-before-loading are also checked in-process, with a loader the test controls."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led
from flavorfusion.serving.app import create_app
from flavorfusion.serving.batcher import Batcher, QueueFull
from flavorfusion.serving.variants import LoadedModel, VariantSource

from .serving_helpers import Server, free_port, metric, request

REVIEWS = ["The butter chicken was rich and the naan fresh.", "Slow service on a Friday night but friendly staff."]
LIMITS = ["serve.max_reviews=5", "serve.max_chars=2000"]


@pytest.fixture(scope="module")
def export(tmp_path_factory, tokenizer):
    return save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path_factory.mktemp("export") / "model"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, export):
    """Two variants of the same export; generation long enough to batch, short enough to be quick."""
    s = Server(tmp_path_factory.mktemp("serve"), [
        f"model.name_or_path={export}", f"+serve.variants.other={export}", "generation.max_new_tokens=12",
        "generation.min_new_tokens=6", "serve.max_batch_size=16", "serve.batch_timeout_ms=100", *LIMITS])
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()


def post(server, path, body, **kwargs):
    status, headers, raw = request(server.url + path, body, **kwargs)
    return status, headers, json.loads(raw)


def test_health_is_polled_from_start_refused_or_503_then_200(server):
    answers = server.health_answers
    assert answers[-1] == 200 and set(answers[:-1]) <= {"refused", 503}, answers
    assert request(server.url + "/healthz")[0] == 200


def test_get_form_answers_the_summary_as_plain_text(server):
    from urllib.parse import quote

    status, headers, body = request(server.url + "/?text=" + quote("|||||".join(REVIEWS)))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body.decode().strip()


def test_get_without_text_is_the_app_page(server):
    status, headers, body = request(server.url + "/", headers={"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"FlavorFusion" in body


def test_json_form(server):
    status, _, data = post(server, "/summarize", {"reviews": REVIEWS})
    assert status == 200 and set(data) == {"summary", "variant", "model", "latency_ms"}
    assert data["summary"] and data["variant"] == "trained" and data["latency_ms"] > 0
    status, _, data = post(server, "/summarize", {"reviews": REVIEWS, "variant": "other"})
    assert status == 200 and data["variant"] == "other"


def test_vertex_form_with_several_instances(server):
    status, _, data = post(server, "/predict", {"instances": [{"reviews": REVIEWS}, {"reviews": REVIEWS[:1]},
                                                              {"reviews": ["Great."]}], "parameters": {}})
    assert status == 200 and len(data["predictions"]) == 3
    assert all(p["summary"] for p in data["predictions"])


BAD = [
    ("GET", "/?text=", None, 400),
    ("GET", "/?text=%20|||||%20", None, 400),
    ("POST", "/summarize", {"reviews": []}, 400),
    ("POST", "/summarize", {}, 400),
    ("POST", "/summarize", {"reviews": "one string"}, 400),
    ("POST", "/summarize", {"reviews": [1, 2]}, 400),
    ("POST", "/summarize", [REVIEWS], 400),
    ("POST", "/summarize", {"reviews": ["r"] * 6}, 413),
    ("POST", "/summarize", {"reviews": ["x" * 2001]}, 413),
    ("POST", "/summarize", b"x" * 1_600_000, 413),
    ("POST", "/summarize", b'{"reviews": [', 400),
    ("POST", "/summarize", {"reviews": REVIEWS, "variant": "nope"}, 400),
    ("POST", "/summarize", {"reviews": REVIEWS, "variant": 3}, 400),
    ("POST", "/predict", {"instances": []}, 400),
    ("POST", "/predict", {"instances": [{"reviews": "x"}]}, 400),
    ("POST", "/predict", {"instances": [{"text": "x"}]}, 400),
    ("POST", "/predict", {"instances": [{"reviews": REVIEWS}], "parameters": {"temperature": 2}}, 400),
    ("GET", "/nowhere", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD, ids=[f"{m} {p} {e}" for m, p, _, e in BAD])
def test_bad_input_is_a_one_line_json_4xx(server, method, path, body, expected):
    status, headers, raw = request(server.url + path, body, method=method)
    assert status == expected, raw
    data = json.loads(raw)
    assert list(data) == ["error"] and data["error"] and "\n" not in data["error"] and "Traceback" not in data["error"]


def test_model_loads_once_across_many_requests(server):
    for _ in range(5):
        assert post(server, "/summarize", {"reviews": REVIEWS})[0] == 200
    variants = {v["name"]: v for v in post(server, "/variants", None)[2]["variants"]}
    assert variants["trained"]["loads"] == variants["other"]["loads"] == 1
    text = request(server.url + "/metrics")[2].decode()
    assert metric(text, "flavorfusion_model_loads_total", variant="trained") == 1


def burst(url: str, n: int, body: dict) -> list:
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait()
        start = time.perf_counter()
        status, headers, raw = request(url, body, timeout=60)
        return status, headers, raw, time.perf_counter() - start

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_burst_of_32_is_batched(server):
    before = request(server.url + "/metrics")[2].decode()
    results = burst(server.url + "/summarize", 32, {"reviews": REVIEWS})
    assert [r[0] for r in results] == [200] * 32
    after = request(server.url + "/metrics")[2].decode()
    served = (metric(after, "flavorfusion_batch_size_sum", variant="trained")
              - metric(before, "flavorfusion_batch_size_sum", variant="trained"))
    calls = (metric(after, "flavorfusion_batch_size_count", variant="trained")
             - metric(before, "flavorfusion_batch_size_count", variant="trained"))
    assert served == 32 and served / calls > 1
    print(f"burst of 32: {calls:.0f} generate calls, mean batch {served / calls:.1f}, mean latency "
          f"{1000 * sum(r[3] for r in results) / 32:.0f} ms")


def test_vertex_env_port_routes_and_full_queue(tmp_path, export):
    """AIP_HTTP_PORT and the AIP routes win over serve.port; with room for one waiting item a burst gets 503s."""
    port = free_port()
    env = {"AIP_HTTP_PORT": str(port), "AIP_PREDICT_ROUTE": "/v1/models/ff:predict", "AIP_HEALTH_ROUTE": "/ready"}
    s = Server(tmp_path, [f"model.name_or_path={export}", "serve.max_queue=1", "serve.max_batch_size=1",
                          "serve.batch_timeout_ms=0", "generation.max_new_tokens=128",
                          "generation.min_new_tokens=128"],
               env=env, port=port)
    try:
        s.wait_healthy("/ready")
        instances = {"instances": [{"reviews": REVIEWS}]}
        status, _, raw = request(s.url + "/v1/models/ff:predict", instances)
        assert status == 200 and json.loads(raw)["predictions"][0]["summary"]
        assert request(s.url + "/predict", instances)[0] == 404
        refused = 0
        for _ in range(3):  # timing: a burst on a busy machine may arrive spread out; one with a 503 is enough
            results = burst(s.url + "/summarize", 24, {"reviews": REVIEWS})
            statuses = sorted(r[0] for r in results)
            assert set(statuses) <= {200, 503} and statuses.count(200) >= 2, statuses
            refused += statuses.count(503)
            if 503 in statuses:
                break
        assert 503 in statuses, statuses
        full = next(r for r in results if r[0] == 503)
        assert full[1]["Retry-After"] == "1" and "queue" in json.loads(full[2])["error"]
        text = request(s.url + "/metrics")[2].decode()
        assert metric(text, "flavorfusion_queue_full_total", variant="trained") == refused
    finally:
        s.stop()


def test_unknown_model_path_is_one_line_and_exit_2(tmp_path):
    s = Server(tmp_path, [f"model.name_or_path={tmp_path}/missing"])
    try:
        assert s.process.wait(60) == 2
        assert "error: variant trained=" in s.output() or "is not a directory" in s.output()
        assert "Traceback" not in s.output()
    finally:
        s.stop()


# --- in-process: health before loading, with a loader the test releases --------------------------------------


def test_health_503_until_the_loader_returns_then_200():
    from fastapi.testclient import TestClient

    release = threading.Event()

    def loader(source):
        release.wait(30)
        return LoadedModel(lambda lists: [f"{len(r)} reviews" for r in lists], "fake")  # encode: the reviews

    app = create_app([VariantSource("trained", "/srv/fake")], loader)
    with TestClient(app) as client:
        answer = client.get("/healthz")
        assert answer.status_code == 503 and "loading" in answer.json()["error"]
        assert client.post("/summarize", json={"reviews": ["a"]}).status_code == 503
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.post("/summarize", json={"reviews": ["a", "b"]}).json()["summary"] == "2 reviews"


def test_batcher_merges_splits_and_bounds():
    calls = []

    def process(items):
        calls.append(list(items))
        time.sleep(0.05)
        return [x * 10 for x in items]

    async def main():
        batcher = Batcher(process, max_batch_size=4, batch_timeout_ms=50, max_queue=6)
        batcher.start()
        results = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))
        with pytest.raises(QueueFull):
            await asyncio.gather(batcher.submit([7] * 4), batcher.submit([8] * 4))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [[10, 20], [30], [40, 50, 60]]
    assert [len(c) for c in calls[:2]] == [4, 2]


def test_batcher_retries_a_failed_batch_one_at_a_time():
    calls = []

    def process(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    async def main():
        batcher = Batcher(process, max_batch_size=8, batch_timeout_ms=50, max_queue=16)
        batcher.start()
        results = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["bad"]), batcher.submit(["c"]),
                                       return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert results[0] == ["A"] and results[2] == ["C"] and isinstance(results[1], ValueError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_source_limit_is_the_encoder_positions_rounded_to_the_window():
    from types import SimpleNamespace

    from flavorfusion.models.loading import source_limit, target_limit

    config = SimpleNamespace(max_encoder_position_embeddings=1000, max_decoder_position_embeddings=300,
                             attention_window=[64, 128])
    assert source_limit(config) == 896 and target_limit(config) == 300
