"""The server under a connection flood and a burst: health and real requests are answered, every refusal is JSON
with `Retry-After` and counted in /metrics.

    python benchmarks/bench_serve_overload.py [--idle 300] [--burst 300] [--seconds 20]

Starts the real server (`python -m flavorfusion.serve`, defaults of conf/serve.yaml: serve.max_connections=256,
serve.max_queue=64) with the quickstart's tiny LED shape, then:

1. holds `--idle` idle sockets open (more than serve.max_connections; reopened as the server closes them, as an
   attacker would) for `--seconds`, while one client polls `GET /healthz` every 100 ms and another sends a
   normal `POST /summarize` after each answer; every health answer must be 200, every summarize answer 200 or a
   JSON 503 with Retry-After;
2. sends a burst of `--burst` concurrent `POST /summarize` and checks that /metrics counted every one of them under
   `route="/summarize"` (or `unrouted` for connections refused before a request), refusals included.

The baseline is the same client without the flood, in the same run: health latency and summarize throughput
beside the flooded figures. Writes benchmarks/results/bench_serve_overload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REVIEWS = ["The butter chicken was rich and the naan fresh.", "Slow service on a Friday night but friendly staff."]


def call(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes, float]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read(), time.perf_counter() - start
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read(), time.perf_counter() - start
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return 0, {}, str(err).encode(), time.perf_counter() - start


def counted(url: str) -> dict[tuple[str, str], float]:
    text = call(url + "/metrics")[2].decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("flavorfusion_requests_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            found[labels["route"].strip('"'), labels["status"].strip('"')] = float(line.split()[-1])
    return found


def clients(url: str, seconds: float) -> dict:
    """Health polled every 100 ms and summarize requests one after another, for `seconds`."""
    health, summaries, stop = [], [], time.monotonic() + seconds

    def poll():
        while time.monotonic() < stop:
            status, _, _, took = call(url + "/healthz", timeout=10)
            health.append((status, took))
            time.sleep(0.1)

    def summarize():
        while time.monotonic() < stop:
            status, headers, body, took = call(url + "/summarize", {"reviews": REVIEWS})
            retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
            ok = status == 200 or (status == 503 and retry and json.loads(body).get("error"))
            summaries.append((status, took, bool(ok)))
            if retry:  # a polite client waits as it is told
                time.sleep(float(retry))

    threads = [threading.Thread(target=poll), threading.Thread(target=summarize)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health_ok = sum(s == 200 for s, _ in health)
    return {"health": len(health), "health_200": health_ok, "health_max_s": round(max(t for _, t in health), 3),
            "summarize": len(summaries), "summarize_200": sum(s == 200 for s, _, _ in summaries),
            "summarize_polite": sum(ok for _, _, ok in summaries),
            "summarize_per_s": round(len(summaries) / seconds, 2)}


def flood(port: int, n: int, stop: threading.Event, every_s: float) -> dict:
    """Keep `n` idle sockets open, reopening those the server closed every `every_s` seconds."""
    sockets: list[socket.socket] = []
    reopened = 0
    while not stop.is_set():
        alive = []
        for s in sockets:
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        reopened += n - len(alive) if sockets else 0
        while len(alive) < n:
            try:
                alive.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        sockets = alive
        stop.wait(every_s)
    for s in sockets:
        s.close()
    return {"idle_sockets": n, "reopened": reopened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--reopen-every", type=float, default=1.0,
                        help="seconds between the flood's rounds of reopening the sockets the server closed")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_serve_overload.json")
    args = parser.parse_args()

    from flavorfusion.models.loading import save_pretrained
    from flavorfusion.models.tiny import build_tiny_led, train_tokenizer
    from flavorfusion.resources import resource_path

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=800)
        export = save_pretrained(build_tiny_led(tokenizer), tokenizer, os.path.join(tmp, "model"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "flavorfusion.serve", f"model.name_or_path={export}", f"serve.port={port}",
             "generation.max_new_tokens=16", "generation.min_new_tokens=8", f"hydra.run.dir={tmp}/run"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while call(url + "/healthz", timeout=2)[0] != 200:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"the server did not start: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.2)
            baseline = clients(url, args.seconds / 2)
            stop = threading.Event()
            flood_result: dict = {}
            flooder = threading.Thread(target=lambda: flood_result.update(flood(port, args.idle, stop, args.reopen_every)))
            flooder.start()
            time.sleep(1)
            flooded = clients(url, args.seconds)
            stop.set()
            flooder.join()

            before = counted(url)
            with ThreadPoolExecutor(args.burst) as pool:
                answers = list(pool.map(lambda _: call(url + "/summarize", {"reviews": REVIEWS}, timeout=120),
                                        range(args.burst)))
            time.sleep(0.5)
            after = counted(url)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
            log.close()

    statuses: dict[str, int] = {}
    for status, *_ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    refusals = [(status, headers, body) for status, headers, body, _ in answers if status not in (0, 200)]
    def header(headers: dict, name: str) -> str:
        return next((v for k, v in headers.items() if k.lower() == name), "")

    json_refusals = sum(1 for _, h, b in refusals if header(h, "content-type").startswith("application/json")
                        and json.loads(b).get("error"))
    retry_after = sum(1 for s, h, _ in refusals if s == 503 and header(h, "retry-after"))
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    counted_burst = sum(v for (route, _), v in delta.items() if route in ("/summarize", "unrouted"))
    result = {"idle": args.idle, "burst": args.burst, "seconds": args.seconds, "baseline": baseline,
              "flooded": {**flooded, **flood_result},
              "burst_statuses": statuses, "burst_refusals_json": json_refusals,
              "burst_503_with_retry_after": retry_after, "burst_counted_in_metrics": counted_burst,
              "metrics_delta": {f"{r} {s}": v for (r, s), v in sorted(delta.items()) if v}}
    print(f"without the flood: {baseline}")
    print(f"with {args.idle} idle sockets: {result['flooded']}")
    print(f"burst of {args.burst}: {statuses}; {json_refusals} of {len(refusals)} refusals JSON, {retry_after} "
          f"503s with Retry-After; counted in /metrics: {counted_burst:.0f} of {args.burst}")
    checks = {"health_always_200": flooded["health_200"] == flooded["health"],
              "summarize_200_or_polite_503": flooded["summarize_polite"] == flooded["summarize"],
              "every_burst_request_counted": counted_burst == args.burst,
              "every_refusal_json": json_refusals == len(refusals)}
    result["checks"] = checks
    print(checks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
