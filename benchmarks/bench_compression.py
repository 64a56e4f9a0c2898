"""Speed and size of each compression variant against fp32, in one process, on a PRIMERA-shaped LED.

Model: LEDConfig with PRIMERA's shape (12+12 layers, d_model 1024, 16 heads, FFN 4096, window 512,
4096/1024 positions, 447M parameters) and random weights: they say nothing of quality but all of
speed and size. Task: greedy generation of 32 tokens from 1024 source tokens (global attention on
<s> and four document separators), batch 1, on the CPU with 2 threads, then with 1.

Variants: fp32 (the baseline), int8_dynamic (flavorfusion's export), l1_unstructured 50% and
structured 50% of FFN neurons (both pruned one-shot; quality is not measured here), and torchao's
eager int8 (`quantize_` with Int8DynamicActivationInt8WeightConfig) for reference. Runs are
interleaved (fp32, int8, ... then again) so a noisy machine slows every variant alike; the reported
latency is the minimum over the runs (the least disturbed one), medians beside it.

    python benchmarks/bench_compression.py [--runs 3] [--new-tokens 32] [--threads 2 1] [--no-zip]

Writes benchmarks/results/compression-<time>.json.
"""

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils import prune
from transformers import LEDConfig, LEDForConditionalGeneration

from flavorfusion.compression import measures
from flavorfusion.compression.pruning import (
    DEFAULT_SUFFIXES,
    ffn_pairs,
    neuron_importance,
    select_linear_modules,
    shrink_ffn,
)
from flavorfusion.compression.quantization import quantize_model

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"int8_dynamic": {"speedup": 2.5, "size_ratio": 2.5}, "structured_50": {"speedup": 1.4}}


def primera_shaped(seed: int = 0) -> LEDForConditionalGeneration:
    config = LEDConfig(vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12,
                       encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                       decoder_ffn_dim=4096, attention_window=[512] * 12, max_encoder_position_embeddings=4096,
                       max_decoder_position_embeddings=1024, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                       decoder_start_token_id=2)
    torch.manual_seed(seed)
    return LEDForConditionalGeneration(config).eval()


def l1_unstructured(model, amount: float):
    params = [(module, "weight") for _, module in select_linear_modules(model, DEFAULT_SUFFIXES)]
    prune.global_unstructured(params, prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)
    return model


def structured(model, amount: float):
    masks = {}
    for name, fc1, fc2 in ffn_pairs(model):
        keep = torch.zeros(fc1.out_features, dtype=torch.bool)
        keep[neuron_importance(fc1, fc2).argsort(descending=True)[: int(round((1 - amount) * fc1.out_features))]] = True
        masks[name] = keep
    return shrink_ffn(model, masks)


def torchao_eager(model):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, fqn: (
        isinstance(m, torch.nn.Linear) and fqn != "lm_head"))
    return model


def inputs(length: int = 1024, docs: int = 5):
    torch.manual_seed(1)
    ids = torch.randint(5, 50000, (1, length))
    ids[0, 0], ids[0, -1] = 0, 2
    global_mask = torch.zeros_like(ids)
    global_mask[0, 0] = 1
    for i in range(1, docs):  # document separators
        global_mask[0, i * length // docs] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "global_attention_mask": global_mask}


def save(model, directory: str, quantization_config: dict | None = None) -> str:
    """What train's export writes (safetensors; the quantized ones with their quantization_config)."""
    if quantization_config:
        model.config.quantization_config = quantization_config
    model.save_pretrained(directory, safe_serialization=True)
    if quantization_config:
        del model.config.quantization_config
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--source-tokens", type=int, default=1024)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts to time (2: the target machine; 1: steadier on a shared one)")
    parser.add_argument("--no-zip", action="store_true", help="skip zipped sizes (a minute per GB)")
    parser.add_argument("--no-torchao-eager", action="store_true")
    args = parser.parse_args()

    fp32 = primera_shaped()
    variants = {"fp32": fp32}
    quantization_configs = {}
    int8 = copy.deepcopy(fp32)
    quantization_configs["int8_dynamic"] = quantize_model(int8, "int8_dynamic")  # conf/quantize default
    variants["int8_dynamic"] = int8
    if not args.no_torchao_eager:
        variants["torchao_eager_int8"] = torchao_eager(copy.deepcopy(fp32))
    variants["structured_50"] = structured(copy.deepcopy(fp32), 0.5)
    variants["l1_unstructured_50"] = l1_unstructured(copy.deepcopy(fp32), 0.5)

    batch = inputs(args.source_tokens)
    fixed = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "num_beams": 1, "do_sample": False}
    # per thread count and variant: (wall seconds, process CPU seconds) of each run
    runs: dict[int, dict[str, list[tuple[float, float]]]] = {t: {name: [] for name in variants} for t in args.threads}
    load_before = os.getloadavg()
    with torch.no_grad():
        for model in variants.values():  # warm-up
            model.generate(**batch, max_new_tokens=2, min_new_tokens=2)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for run in range(args.runs):
                for name, model in variants.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    model.generate(**batch, **fixed)
                    runs[threads][name].append((time.perf_counter() - wall, time.process_time() - cpu))
                    print(f"{threads} threads, run {run + 1}/{args.runs} {name:>20}: "
                          f"{runs[threads][name][-1][0]:.2f} s", flush=True)
    load_after = os.getloadavg()

    report = {"task": f"greedy {args.new_tokens} tokens from {args.source_tokens} source tokens, batch 1",
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
              "latency": "min of the interleaved runs (the least disturbed on a shared machine); medians beside",
              "variants": {}, "speed": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in variants.items():
            entry = {}
            if name != "torchao_eager_int8":  # its safetensors reload fails (docs/compression.md)
                qconfig = quantization_configs.get(name)
                directory = save(model, os.path.join(tmp, name), qconfig)
                entry["size_bytes"] = measures.size_on_disk(directory)
                if not args.no_zip and name in ("fp32", "l1_unstructured_50", "int8_dynamic"):
                    entry["zipped_bytes"] = measures.zipped_size(directory)
                for f in measures.weight_files(directory):
                    os.remove(f)
            report["variants"][name] = entry
    base = report["variants"]["fp32"]
    for entry in report["variants"].values():
        if "size_bytes" in entry:
            entry["size_ratio"] = base["size_bytes"] / entry["size_bytes"]
        if "zipped_bytes" in entry:
            entry["zipped_ratio"] = base["zipped_bytes"] / entry["zipped_bytes"]

    print(f"\n{report['task']}; load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    for threads, by_variant in runs.items():
        speed = {}
        for name, values in by_variant.items():
            walls, cpus = [w for w, _ in values], [c for _, c in values]
            speed[name] = {"latency_s": min(walls), "median_s": statistics.median(walls), "cpu_s": min(cpus),
                           "runs_s": walls}
        for entry in speed.values():
            entry["speedup"] = speed["fp32"]["latency_s"] / entry["latency_s"]
            entry["median_speedup"] = speed["fp32"]["median_s"] / entry["median_s"]
        report["speed"][f"{threads}_threads"] = speed
        print(f"\n{threads} thread(s)      min latency  speedup  (median  speedup)  size MB  smaller  zipped MB")
        for name, entry in speed.items():
            sizes = report["variants"][name]
            size = f"{sizes['size_bytes'] / 1e6:8.0f} {sizes['size_ratio']:7.2f}x" if "size_bytes" in sizes else " " * 17
            zipped = f"{sizes['zipped_bytes'] / 1e6:10.0f}" if "zipped_bytes" in sizes else ""
            print(f"{name:>20} {entry['latency_s']:10.2f}s {entry['speedup']:7.2f}x  ({entry['median_s']:6.2f}s "
                  f"{entry['median_speedup']:6.2f}x) {size} {zipped}")
        for name, target in TARGETS.items():
            checks = []
            for key, value in target.items():
                got = speed[name]["speedup"] if key == "speedup" else report["variants"][name][key]
                checks.append(f"{key} {got:.2f}x (target >= {value}x: {'met' if got >= value else 'NOT met'})")
            print(f"{name}: " + ", ".join(checks))
    report["targets"] = TARGETS
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compression-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
