"""The server under bursts of concurrent requests, against the fastest honest baseline: the same model generating
the same inputs in batches of the same size, in one process, with nothing between.

Starts the real server (`python -m flavorfusion.serve`, a subprocess on 127.0.0.1) serving an fp32 export of
the benchmarks' `small` LED shape (d_model 256, 2+2 layers, window 128; random weights: speed only) and its
int8_dynamic export beside it, sends bursts of 1, 8, 32 and 64 concurrent `POST /summarize` to each variant,
and reports p50/p95 latency, throughput, status counts and the mean batch size (from /metrics). Before each
burst of n, the baseline loop encodes once and calls the runtime's `generate` on batches of min(n,
serve.max_batch_size) of the same inputs, in this process (the server idle meanwhile). Every generation makes
exactly --new-tokens tokens. Reported: the server's throughput as a share of that loop's (what HTTP, JSON,
per-request encoding and the batcher cost), and the server's own scaling from 1 to 32 concurrent requests.

    python benchmarks/bench_serve.py [--new-tokens 16] [--out benchmarks/results/serve.json]
"""

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
from statistics import median

from omegaconf import OmegaConf

from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led, train_tokenizer
from flavorfusion.resources import resource_path

ROOT = Path(__file__).resolve().parents[1]
BURSTS = (1, 8, 32, 64)


def inputs(n: int) -> list[list[str]]:
    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        groups = [json.loads(line)["reviews"] for line in f if line.strip()]
    return [groups[i % len(groups)] for i in range(n)]


def exports(directory: str) -> tuple[str, str]:
    from flavorfusion.compression.quantization import export_quantized

    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=1000)
    model = build_tiny_led(tokenizer, d_model=256, layers=2, heads=4, ffn_dim=1024, attention_window=128,
                           max_source_positions=4096, max_target_positions=1024)
    fp32 = save_pretrained(model, tokenizer, os.path.join(directory, "fp32"))
    int8 = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                              "export_dir": os.path.join(directory, "int8")}), fp32)
    return fp32, int8


class Loop:
    """The baseline: the runtime's `generate` on batches of the inputs, encoded once, in this process."""

    def __init__(self, export: str, generation: dict, data):
        from flavorfusion.config.generation import GenerationConf
        from flavorfusion.config.model import ModelSource
        from flavorfusion.models.runtime import InferenceRuntime, Placement

        self.runtime = InferenceRuntime(ModelSource.parse(export, "export"), GenerationConf(**generation), data,
                                        Placement("cpu", "float32")).load()

    def run(self, reviews: list[list[str]], batch_size: int) -> dict:
        from flavorfusion.data.record import ReviewGroup

        features = self.runtime.encode([ReviewGroup(str(i), r) for i, r in enumerate(reviews)])
        start = time.perf_counter()
        for i in range(0, len(features), batch_size):
            self.runtime.generate(features[i:i + batch_size])
        seconds = time.perf_counter() - start
        return {"requests": len(reviews), "batch_size": batch_size, "seconds": round(seconds, 3),
                "per_s": round(len(reviews) / seconds, 3)}


def post(url: str, body: dict) -> tuple[int, float]:
    req = urllib.request.Request(url, json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as err:
        status = err.code
    return status, time.perf_counter() - start


def metric(url: str, name: str, variant: str) -> float:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{variant="{variant}"}} '):
            return float(line.split()[-1])
    return 0.0


def burst(url: str, variant: str, reviews: list[list[str]]) -> dict:
    n = len(reviews)
    barrier = threading.Barrier(n)
    calls = metric(url, "flavorfusion_batch_size_count", variant)
    items = metric(url, "flavorfusion_batch_size_sum", variant)

    def one(r):
        barrier.wait()
        return post(url + "/summarize", {"reviews": r, "variant": variant})

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, reviews))
    seconds = time.perf_counter() - start
    latencies = sorted(t for _, t in results)
    statuses: dict[str, int] = {}
    for s, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    calls = metric(url, "flavorfusion_batch_size_count", variant) - calls
    items = metric(url, "flavorfusion_batch_size_sum", variant) - items
    return {"concurrency": n, "seconds": round(seconds, 3), "per_s": round(n / seconds, 3),
            "p50_ms": round(1000 * median(latencies), 1),
            "p95_ms": round(1000 * latencies[min(n - 1, int(0.95 * n))], 1),
            "statuses": statuses, "generate_calls": calls, "mean_batch": round(items / calls, 2) if calls else None}


def start_server(fp32: str, int8: str, port: int, args, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flavorfusion.serve", f"model.name_or_path={fp32}", f"+serve.variants.int8={int8}",
           f"serve.port={port}", f"serve.max_batch_size={args.max_batch_size}",
           f"serve.batch_timeout_ms={args.batch_timeout_ms}", "serve.max_queue=256", "device=cpu",
           f"generation.max_new_tokens={args.new_tokens}", f"generation.min_new_tokens={args.new_tokens}",
           f"data.max_source_length={args.max_source_length}", f"hydra.run.dir={log.name}.run"]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200:
                return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise SystemExit("the server did not become healthy in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--max-source-length", type=int, default=512)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=50)
    parser.add_argument("--out", default="benchmarks/results/serve.json")
    args = parser.parse_args()

    data = OmegaConf.load(ROOT / "conf" / "data" / "reviews.yaml")
    data.seed = 0  # the data config interpolates the run seed
    data.max_source_length = args.max_source_length
    generation = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "num_beams": 1}
    reviews = inputs(max(BURSTS))
    load_before = os.getloadavg()
    result = {"shape": "small (d_model 256, 2+2 layers, window 128)", "new_tokens": args.new_tokens,
              "max_source_length": args.max_source_length, "max_batch_size": args.max_batch_size,
              "batch_timeout_ms": args.batch_timeout_ms, "cpu_count": os.cpu_count(), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = exports(tmp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115
        process = start_server(fp32, int8, port, args, log)  # idle while the loop runs
        try:
            url = f"http://127.0.0.1:{port}"
            for variant, name, export in (("trained", "fp32", fp32), ("int8", "int8", int8)):
                loop = Loop(export, generation, data)
                loop.run(reviews[:1], 1)  # warm-up, not counted
                post(url + "/summarize", {"reviews": reviews[0], "variant": variant})  # warm-up
                bursts = []
                for n in BURSTS:  # the loop right before each burst, the server idle meanwhile
                    baseline = loop.run(reviews[:n], min(n, args.max_batch_size))
                    b = burst(url, variant, reviews[:n])
                    b["loop"] = baseline
                    b["vs_loop"] = round(b["per_s"] / baseline["per_s"], 3)
                    bursts.append(b)
                one = next(b for b in bursts if b["concurrency"] == 1)
                at32 = next(b for b in bursts if b["concurrency"] == 32)
                result["variants"][name] = {"bursts": bursts,
                                            "scaling_32_vs_1": round(at32["per_s"] / one["per_s"], 2)}
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
            log.close()
    result["loadavg_before"], result["loadavg_after"] = load_before, os.getloadavg()
    for name, v in result["variants"].items():
        print(f"{name}: the server scales {v['scaling_32_vs_1']:.2f}x from 1 to 32 concurrent requests")
        for b in v["bursts"]:
            print(f"  {b['concurrency']:3d} concurrent: {b['per_s']:6.2f} req/s, the loop at batch "
                  f"{b['loop']['batch_size']} {b['loop']['per_s']:6.2f}/s ({b['vs_loop']:.2f}x)  p50 {b['p50_ms']:.0f} "
                  f"ms  p95 {b['p95_ms']:.0f} ms  mean batch {b['mean_batch']}  {b['statuses']}")
    print(f"loadavg before {load_before}, after {result['loadavg_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
