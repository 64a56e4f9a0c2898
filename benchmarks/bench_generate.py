"""Generation speed: the original code's `model.generate`, HF batched, and the project's path
(`flavorfusion.models.generation.generate_ids`), in one process, on a PRIMERA-shaped LED.

Model: LEDConfig with PRIMERA's shape (vocab 50266, 12+12 layers, d_model 1024, 16 heads, FFN 4096, window
512, 4096/1024 positions) and random weights: they say nothing of quality but all of speed. Task: greedy
decoding of `--new-tokens` tokens from `--source-tokens` source tokens (global attention on <s> and on four
<doc-sep>), `min_new_tokens = max_new_tokens` so every recipe generates the same count.

Recipes, on CUDA (default 1024 -> 128 tokens, batch 64):
  hf_fp32_b1           the original code's way: fp32 weights, plain `model.generate`, batch 1
  hf_bf16_dynamic_bN   bf16 weights, plain `model.generate` (dynamic cache), batch N
  project_bf16_b1/bN   bf16 weights, FlexAttention encoder (`--encoder-attention`, model.attention=flex),
                       `generate_ids` with cache="auto": the static cache, fixed for LED, each decoding step
                       compiled by transformers (CUDA graphs)
On CPU (default 1024 -> 32 tokens, batch 8; fp32 only, bf16 is no help there):
  hf_fp32_b1, hf_fp32_dynamic_bN
  project_fp32_b1/bN   fp32, the encoder's attention as one SDPA call (model.attention=flex on CPU),
                       `generate_ids` (cache="auto": dynamic on CPU)
  project_int8_b1/bN   the same on the `int8_dynamic` export written by `flavorfusion.compression
                       .quantization.export_quantized` (conf/quantize/int8_dynamic.yaml), loaded back as
                       evaluate and serve load it: per-token activation scales, batch-invariant
  project_*_bN_batched_encoder   the same with one encoder pass for the batch (generation.batch_invariant=false):
                       what encoding each row alone costs
The project recipes on CPU run as the runtime does (generation.batch_invariant: each row's encoder pass alone, the
decoding steps batched); on CUDA with one batched encoder pass.

Each recipe gets one warm-up call (its time is reported: on CUDA it includes compiling), then `--runs` timed
calls, interleaved across recipes so a noisy shared machine slows all alike; latency is the minimum run,
medians beside it. Targets (recorded, checked where the device is present): CUDA project >= 150 summaries/s
batched and <= 0.3 s at batch 1; CPU int8 >= 2.5x the summaries/s of the project's fp32 at the same batch size,
at batch 1 and batched. The CPU's int8 instructions (AVX2, AVX-512 VNNI, AVX-VNNI, AMX) are printed and saved:
int8 speed depends on them.

    python benchmarks/bench_generate.py                                  # PRIMERA shape, CUDA if present
    python benchmarks/bench_generate.py --device cpu --shape small --new-tokens 8 --runs 1   # smoke run

Writes benchmarks/results/generate.json (`--out`).
"""

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import LEDConfig, LEDForConditionalGeneration

from flavorfusion.config.generation import GenerationConf
from flavorfusion.models.generation import generate_ids

RESULTS = Path(__file__).resolve().parent / "results"
DOC_SEP_ID = 50265  # PRIMERA's <doc-sep>; in the "small" shape's vocab too
SHAPES = {
    "primera": {"d_model": 1024, "layers": 12, "heads": 16, "ffn": 4096, "window": 512},
    "small": {"d_model": 256, "layers": 2, "heads": 4, "ffn": 1024, "window": 128},
}
TARGETS = {"cuda": {"project_batched_summaries_per_s": 150, "project_b1_latency_s": 0.3},
           "cpu": {"int8_b1_speedup_over_fp32_b1": 2.5, "int8_batched_speedup_over_fp32_batched": 2.5}}
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_instructions() -> dict:
    """Which int8 instructions the CPU has (from /proc/cpuinfo) and torch's own dispatch level."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        flags = set()
    return {"flags": {flag: flag in flags for flag in INT8_FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def led(shape: str, seed: int = 0) -> LEDForConditionalGeneration:
    s = SHAPES[shape]
    config = LEDConfig(vocab_size=50266, d_model=s["d_model"], encoder_layers=s["layers"],
                       decoder_layers=s["layers"], encoder_attention_heads=s["heads"],
                       decoder_attention_heads=s["heads"], encoder_ffn_dim=s["ffn"], decoder_ffn_dim=s["ffn"],
                       attention_window=[s["window"]] * s["layers"], max_encoder_position_embeddings=4096,
                       max_decoder_position_embeddings=1024, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                       decoder_start_token_id=2)
    torch.manual_seed(seed)
    return LEDForConditionalGeneration(config).eval()


def inputs(batch_size: int, length: int, docs: int = 5, device: str = "cpu") -> dict:
    """`batch_size` rows of `length` tokens in PRIMERA's layout: <s> doc <doc-sep> ... </s>."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50000, (batch_size, length), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2
    for i in range(1, docs):
        ids[:, i * length // docs] = DOC_SEP_ID
    global_mask = (ids == DOC_SEP_ID).long()
    global_mask[:, 0] = 1
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                          "global_attention_mask": global_mask}.items()}


def hf_generate(model, batch: dict, tokens: int):
    """The original code's call: plain `generate`, the dynamic cache."""
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, num_beams=1, do_sample=False)


def project_generate(model, batch: dict, tokens: int, batch_invariant: bool = True):
    """The runtime's call: with `batch_invariant`, each row's encoder pass alone, the decoding steps batched."""
    rows = [{key: value[i:i + 1] for key, value in batch.items()} for i in range(len(batch["input_ids"]))]
    generation = GenerationConf(max_new_tokens=tokens, min_new_tokens=tokens, batch_invariant=batch_invariant)
    return generate_ids(model, batch, generation, rows)


def project_generate_batched_encoder(model, batch: dict, tokens: int):
    """One encoder pass for the whole batch (generation.batch_invariant=false)."""
    return project_generate(model, batch, tokens, batch_invariant=False)


def int8_export(fp32: LEDForConditionalGeneration, directory: str) -> LEDForConditionalGeneration:
    """The int8_dynamic export as training writes it and as evaluate/serve load it."""
    from omegaconf import OmegaConf

    from flavorfusion.compression.quantization import export_quantized
    from flavorfusion.models.loading import load_pretrained, save_pretrained
    from flavorfusion.models.tiny import train_tokenizer
    from flavorfusion.resources import resource_path

    # the exports carry a tokenizer; ids here are random, so a small local one will do
    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=1000)
    fp_dir = save_pretrained(fp32, tokenizer, os.path.join(directory, "fp32"))
    quantize = OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                 "export_dir": os.path.join(directory, "int8_dynamic")})
    model, _ = load_pretrained(export_quantized(quantize, fp_dir))
    return model.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def with_encoder_attention(model, kind: str):
    """The project's encoder attention (`model.attention`): "flex" is FlexAttention on CUDA, SDPA on CPU."""
    if kind == "flex":
        from flavorfusion.models.attention import set_encoder_attention

        set_encoder_attention(model, "flex")
    return model


def recipes(args, device: str, tmp: str) -> dict:
    """name -> (model, batch, call, settings)."""
    source, batched, attention = args.source_tokens, args.batch_size, args.encoder_attention
    fp32 = led(args.shape).to(device)
    hf = {"dtype": "float32", "encoder_attention": "hf", "cache": "dynamic", "call": "model.generate"}
    out = {"hf_fp32_b1": (fp32, inputs(1, source, device=device), hf_generate, hf)}
    project = {"encoder_attention": attention, "call": "generation.generate_ids", "cache": "auto"}
    if device == "cuda":
        bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
        out[f"hf_bf16_dynamic_b{batched}"] = (bf16, inputs(batched, source, device=device), hf_generate,
                                              {**hf, "dtype": "bfloat16"})
        project_bf16 = with_encoder_attention(copy.deepcopy(bf16), attention)
        settings = {**project, "dtype": "bfloat16", "cache": "auto (static, compiled steps)"}
        for size in (1, batched):
            out[f"project_bf16_b{size}"] = (project_bf16, inputs(size, source, device=device),
                                            project_generate_batched_encoder, {**settings, "batch_invariant": False})
        return out
    out[f"hf_fp32_dynamic_b{batched}"] = (fp32, inputs(batched, source), hf_generate, hf)
    settings = {**project, "cache": "auto (dynamic on CPU)"}
    project_fp32 = with_encoder_attention(copy.deepcopy(fp32), attention)
    for size in (1, batched):
        out[f"project_fp32_b{size}"] = (project_fp32, inputs(size, source), project_generate,
                                        {**settings, "dtype": "float32", "batch_invariant": True})
    out[f"project_fp32_b{batched}_batched_encoder"] = (project_fp32, inputs(batched, source),
                                                       project_generate_batched_encoder,
                                                       {**settings, "dtype": "float32", "batch_invariant": False})
    if not args.no_int8:
        int8 = with_encoder_attention(int8_export(fp32, tmp), attention)
        int8_settings = {**settings, "dtype": "int8_dynamic export (per-token activation scales, oneDNN)"}
        for size in (1, batched):
            out[f"project_int8_b{size}"] = (int8, inputs(size, source), project_generate,
                                            {**int8_settings, "batch_invariant": True})
        out[f"project_int8_b{batched}_batched_encoder"] = (int8, inputs(batched, source),
                                                           project_generate_batched_encoder,
                                                           {**int8_settings, "batch_invariant": False})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="primera")
    parser.add_argument("--source-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--batch-size", type=int, help="the batched recipes' batch; default: 64 on CUDA, 8 on CPU")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads on CPU (default: torch's)")
    parser.add_argument("--encoder-attention", choices=["flex", "hf"], default="flex",
                        help="the project's encoder attention (model.attention): flex is FlexAttention on CUDA, "
                             "SDPA on CPU")
    parser.add_argument("--no-int8", action="store_true", help="CPU: skip the int8_dynamic export")
    parser.add_argument("--out", type=Path, default=RESULTS / "generate.json")
    args = parser.parse_args()

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    args.new_tokens = args.new_tokens or (128 if device == "cuda" else 32)
    args.batch_size = args.batch_size or (64 if device == "cuda" else 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = device_name(device)
    instructions = cpu_int8_instructions()
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}; shape "
          f"{args.shape}, {args.source_tokens} -> {args.new_tokens} tokens", flush=True)
    if device == "cpu":
        print("CPU int8 instructions: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in
                                                     instructions["flags"].items())
              + f"; torch dispatches to {instructions['torch_cpu_capability']}", flush=True)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        built = recipes(args, device, tmp)
        results, first_row_ids = {}, {}
        for recipe, (model, batch, call, settings) in built.items():
            sync(device)
            start = time.perf_counter()
            ids = call(model, batch, args.new_tokens)
            sync(device)
            new = ids.shape[1] - 1  # after the decoder start token
            assert new == args.new_tokens, f"{recipe} generated {new} tokens, not {args.new_tokens}"
            results[recipe] = {"batch_size": len(batch["input_ids"]), **settings,
                               "first_call_s": time.perf_counter() - start, "runs_s": []}
            # every batch's first row is the batch-1 input: same tokens where the arithmetic is the same
            first_row_ids[recipe] = ids[0].tolist()
            results[recipe]["first_row_ids"] = first_row_ids[recipe]
            results[recipe]["first_row_ids_equal_hf_fp32_b1"] = first_row_ids[recipe] == first_row_ids["hf_fp32_b1"]
            print(f"warm-up {recipe:>24}: {results[recipe]['first_call_s']:.2f} s", flush=True)
        for run in range(args.runs):
            for recipe, (model, batch, call, _) in built.items():
                sync(device)
                start = time.perf_counter()
                call(model, batch, args.new_tokens)
                sync(device)
                results[recipe]["runs_s"].append(time.perf_counter() - start)
                print(f"run {run + 1}/{args.runs} {recipe:>24}: {results[recipe]['runs_s'][-1]:.2f} s", flush=True)
        del built
        gc.collect()
    load_after = os.getloadavg()

    for entry in results.values():
        entry["latency_s"] = min(entry["runs_s"])
        entry["median_s"] = statistics.median(entry["runs_s"])
        entry["summaries_per_s"] = entry["batch_size"] / entry["latency_s"]
    base = results["hf_fp32_b1"]["summaries_per_s"]
    for entry in results.values():
        entry["speedup_over_hf_fp32_b1"] = entry["summaries_per_s"] / base

    print(f"\n{name}; {args.source_tokens} -> {args.new_tokens} tokens; load average {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f}")
    print(f"{'recipe':>24} {'batch':>5} {'latency':>9} {'median':>8} {'summaries/s':>12} {'vs hf_fp32_b1':>14} "
          f"{'first call':>11}")
    for recipe, entry in results.items():
        print(f"{recipe:>24} {entry['batch_size']:5d} {entry['latency_s']:8.2f}s {entry['median_s']:7.2f}s "
              f"{entry['summaries_per_s']:12.2f} {entry['speedup_over_hf_fp32_b1']:13.2f}x "
              f"{entry['first_call_s']:10.2f}s")

    checks = {}
    batched = args.batch_size
    if device == "cuda":
        project_b1, project_bn = results["project_bf16_b1"], results[f"project_bf16_b{batched}"]
        hf_bn = results[f"hf_bf16_dynamic_b{batched}"]
        print(f"project batch {batched} vs HF bf16 dynamic batch {batched}: "
              f"{project_bn['summaries_per_s'] / hf_bn['summaries_per_s']:.2f}x summaries/s")
        checks["project_batched_summaries_per_s"] = project_bn["summaries_per_s"]
        checks["project_b1_latency_s"] = project_b1["latency_s"]
    elif not args.no_int8:
        for size, key in ((1, "int8_b1_speedup_over_fp32_b1"), (batched, "int8_batched_speedup_over_fp32_batched")):
            checks[key] = (results[f"project_int8_b{size}"]["summaries_per_s"]
                           / results[f"project_fp32_b{size}"]["summaries_per_s"])
            same = results[f"project_int8_b{size}"]["first_row_ids"] == results["project_int8_b1"]["first_row_ids"]
            print(f"int8 batch {size}: its first row's tokens equal int8 batch 1's: {same}")
        for kind in ("fp32", "int8"):
            invariant = results[f"project_{kind}_b{batched}"]["summaries_per_s"]
            batched_encoder = results[f"project_{kind}_b{batched}_batched_encoder"]["summaries_per_s"]
            checks[f"{kind}_batch_invariance_cost"] = 1 - invariant / batched_encoder
            print(f"{kind} batch {batched}: encoding each row alone (batch_invariant) gives {invariant:.3f} "
                  f"summaries/s, one batched encoder pass {batched_encoder:.3f}: "
                  f"{100 * checks[f'{kind}_batch_invariance_cost']:+.1f}% cost")
    at_target_shape = args.shape == "primera" and args.source_tokens == 1024 and (
        device == "cpu" or args.new_tokens == 128)
    for key, value in checks.items():
        if key not in TARGETS[device]:
            continue
        target = TARGETS[device][key]
        met = value <= target if key.endswith("latency_s") else value >= target
        print(f"{key}: {value:.2f} (target {'<=' if key.endswith('latency_s') else '>='} {target}: "
              f"{'met' if met else 'NOT met'}{'' if at_target_shape else ', not the target shape'})")

    report = {"task": f"greedy {args.new_tokens} new tokens from {args.source_tokens} source tokens",
              "device": name, "device_type": device, "shape": {"name": args.shape, **SHAPES[args.shape]},
              "torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0],
              "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "cpu_int8": instructions,
              "loadavg_before": load_before,
              "loadavg_after": load_after, "runs": args.runs,
              "latency": "min of the interleaved runs; medians beside", "recipes": results,
              "targets": TARGETS[device], "checks": checks, "at_target_shape": at_target_shape}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
