"""Training throughput at PRIMERA's shape: the original recipe, plain Hugging Face bf16, and the project's step.

All in one process, on random weights built from `LEDConfig` (no download), on synthetic review groups
(PRIMERA's layout: `<s> doc <doc-sep> doc ... </s>`, global attention on `<s>` and each `<doc-sep>`):

- original: the original code's recipe, HF model, fp16 autocast + GradScaler, batch 1, labels padded to 512;
- hf_bf16: a plain HF loop, bf16 autocast, fused AdamW, at the project's batch (labels padded to the longest);
- project_*: `Summarizer.training_step` through `PrimeraCollator` and the Lightning `Trainer` that
  `conf/trainer/gpu.yaml` builds (bf16-mixed), with the levers it offers: HF or FlexAttention encoder
  attention (`model.attention`), fused AdamW, TF32 matmuls (`float32_matmul_precision`), regional
  `torch.compile` (`model.compile`), token-budget batches (`data.batch_tokens`) on mixed lengths.

For each: samples/s, source+target tokens/s, achieved TFLOP/s (the HF model's FLOPs per sample, counted once
per shape with FlopCounterMode, over the measured time), peak GiB, and the ratio to hf_bf16 and to original.
`--l4-check` caps this process at 22 GiB (`torch.cuda.set_per_process_memory_fraction`) and runs the
`trainer=l4` preset at source 4096.

    python benchmarks/bench_gpu_train.py                      # GPU: PRIMERA shape, src 1024 and 4096
    python benchmarks/bench_gpu_train.py --l4-check           # also the L4 preset under a 22 GiB cap
    python benchmarks/bench_gpu_train.py --shape tiny --device cpu --sources 256 --steps 2   # smoke run
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import LEDConfig, LEDForConditionalGeneration

from flavorfusion.data.batching import TokenBudgetBatchSampler
from flavorfusion.data.encoding import LABEL_PAD_ID, PrimeraCollator

CONF = Path(__file__).resolve().parents[1] / "conf"
BOS, PAD, EOS, DOC_SEP_ID = 0, 1, 2, 50265
SHAPES = {
    # allenai/PRIMERA: LED-large, 447M parameters
    "primera": dict(vocab_size=50266, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, attention_window=512,
                    max_encoder_position_embeddings=4096, max_decoder_position_embeddings=1024),
    "tiny": dict(vocab_size=50266, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, attention_window=32,
                 max_encoder_position_embeddings=4096, max_decoder_position_embeddings=1024),
}


def build_model(shape: str, device: torch.device) -> LEDForConditionalGeneration:
    torch.manual_seed(0)
    config = LEDConfig(**SHAPES[shape], pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                       decoder_start_token_id=EOS, dropout=0.1, attention_dropout=0.0)
    return LEDForConditionalGeneration(config).to(device).train()


def synthetic_examples(n: int, src: int, tgt: int, mixed: bool, seed: int = 0) -> list[dict]:
    """Encoded review groups: 8 documents each; `mixed` draws source lengths from src/8..src."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        length = rng.randint(src // 8, src) if mixed else src
        docs = 8
        body = max(1, (length - 2 - docs) // docs)
        ids = [BOS]
        for _ in range(docs):
            ids += [rng.randint(5, 50000) for _ in range(body)] + [DOC_SEP_ID]
        ids.append(EOS)
        examples.append({"input_ids": ids[:length - 1] + [EOS], "labels": [rng.randint(5, 50000) for _ in range(tgt)]})
    return examples


def model_flops_per_sample(model, collator, example, device) -> float:
    """Forward + backward FLOPs of the HF model for one example (FlopCounterMode, no autocast)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = {k: v.to(device) for k, v in collator([example]).items() if torch.is_tensor(v)}
    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def run_plain_loop(model, batches, device, steps, warmup, dtype, scaler: bool, fused: bool) -> dict:
    """A plain PyTorch loop over HF's model: autocast(dtype), AdamW, optional GradScaler (the original fp16)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    grad_scaler = torch.amp.GradScaler(device.type) if scaler else None
    samples = tokens = 0
    _reset_peak(device)
    for step, batch in enumerate(batches):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=dtype):
            loss = model(**batch).loss
        if grad_scaler:
            grad_scaler.scale(loss).backward()
            grad_scaler.step(optimizer)
            grad_scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            samples += batch["input_ids"].shape[0]
            tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != LABEL_PAD_ID).sum())
        if step + 1 == warmup + steps:
            break
    _sync(device)
    seconds = time.perf_counter() - start
    return {"samples": samples, "tokens": tokens, "seconds": seconds, "peak_gib": _peak_gib(device)}


class _StepTimer:
    """Lightning callback: wall time of the training steps after `warmup`."""

    def __init__(self, warmup: int, device):
        from lightning.pytorch.callbacks import Callback

        timer = self

        class Timer(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == timer.warmup:
                    _sync(timer.device)
                    timer.start = time.perf_counter()
                    _reset_peak(timer.device)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx >= timer.warmup:
                    timer.samples += batch["input_ids"].shape[0]
                    timer.tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != LABEL_PAD_ID).sum())

            def on_train_end(self, trainer, pl_module):
                _sync(timer.device)
                timer.seconds = time.perf_counter() - timer.start

        self.warmup, self.device = warmup, device
        self.samples = self.tokens = 0
        self.start = self.seconds = None
        self.callback = Timer()


def run_project(model, loader, device, steps, warmup, *, attention: str, fused: bool, compile: bool,
                matmul_precision: str, checkpointing: bool = False) -> dict:
    """The project's step: Summarizer + PrimeraCollator batches + the Trainer of conf/trainer/gpu.yaml."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from flavorfusion.models.summarizer import Summarizer

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu" if device.type == "cuda" else "trainer=cpu",
                                          "paths.output_dir=/tmp/bench_gpu_train", f"model.optimizer.fused={fused}"])
    torch.set_float32_matmul_precision(matmul_precision)
    summarizer = Summarizer(model, tokenizer=None, optimizer=instantiate(cfg.model.optimizer), scheduler=None,
                            attention=attention, compile=compile, gradient_checkpointing=checkpointing)
    timer = _StepTimer(warmup, device)
    trainer = instantiate(cfg.trainer, precision="bf16-mixed", max_steps=warmup + steps, max_epochs=-1,
                          limit_val_batches=0, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[timer.callback])
    trainer.fit(summarizer, train_dataloaders=loader)
    return {"samples": timer.samples, "tokens": timer.tokens, "seconds": timer.seconds,
            "peak_gib": _peak_gib(device)}


def fixed_batches(examples, batch_size, collator, seed=0):
    rng = random.Random(seed)
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield collator([examples[j] for j in order[i:i + batch_size]])


def original_batches(examples, collator, target_pad: int = 512):
    """Batch 1, labels padded to 512 with -100 (the original HF Trainer script's max_target_length padding)."""
    while True:
        for example in examples:
            batch = collator([example])
            labels = torch.full((1, max(target_pad, batch["labels"].shape[1])), LABEL_PAD_ID)
            labels[:, :batch["labels"].shape[1]] = batch["labels"]
            batch["labels"] = labels
            yield batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="primera")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sources", default="1024,4096", help="source lengths to measure")
    parser.add_argument("--target", type=int, default=128)
    parser.add_argument("--batch", default="1024:32,4096:4", help="the project's batch per source length")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", default="original,hf_bf16,project_hf,project_flex,project_flex_compile,"
                                              "project_flex_unfused,project_flex_budget")
    parser.add_argument("--l4-check", action="store_true", help="trainer=l4 at source 4096 under a 22 GiB cap")
    parser.add_argument("--out", default="benchmarks/results/gpu_train.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    window = SHAPES[args.shape]["attention_window"]
    collator = PrimeraCollator(PAD, DOC_SEP_ID, pad_to_multiple_of=window)
    batch_of = {int(k): int(v) for k, v in (item.split(":") for item in args.batch.split(","))}
    variants = args.variants.split(",")
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
              "torch": torch.__version__, "shape": args.shape, "target": args.target, "steps": args.steps,
              "warmup": args.warmup, "runs": {}}
    print(f"device: {result['device']}  shape: {args.shape}")
    model = build_model(args.shape, device)
    result["parameters"] = sum(p.numel() for p in model.parameters())
    del model
    n = (args.warmup + args.steps) * max(batch_of.values()) + 8

    for src in map(int, args.sources.split(",")):
        batch = batch_of.get(src, 1)
        examples = synthetic_examples(n, src, args.target, mixed=False)
        flops = model_flops_per_sample(build_model(args.shape, device), collator, examples[0], device)
        runs = {}
        for name in variants:
            # a fresh model per variant: compiled layers and swapped attention must not leak into the next one
            model = build_model(args.shape, device)
            try:
                if name == "original":
                    runs[name] = run_plain_loop(model, original_batches(examples, collator), device, args.steps * batch,
                                                args.warmup, torch.float16, scaler=True, fused=False)
                elif name == "hf_bf16":
                    runs[name] = run_plain_loop(model, fixed_batches(examples, batch, collator), device, args.steps,
                                                args.warmup, torch.bfloat16, scaler=False, fused=True)
                else:
                    flex = "flex" in name
                    budget = name.endswith("_budget")
                    data = synthetic_examples(n * 2, src, args.target, mixed=True) if budget else examples
                    if budget:  # same padded-token count per batch as the fixed batches of full-length groups
                        sampler = TokenBudgetBatchSampler([len(e["input_ids"]) for e in data], batch * src,
                                                          pad_to_multiple_of=window, seed=0)
                        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collator)
                    else:
                        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, collate_fn=collator,
                                                             drop_last=True)
                    runs[name] = run_project(model, loader, device, args.steps, args.warmup,
                                             attention="flex" if flex else "hf", fused=not name.endswith("_unfused"),
                                             compile=name.endswith("_compile"), matmul_precision="high")
                    if budget:
                        # mixed lengths: compare with fixed batches of the same data, same attention
                        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True,
                                                             collate_fn=collator, drop_last=True)
                        runs[name + "_baseline_fixed"] = run_project(
                            model, loader, device, args.steps, args.warmup, attention="flex", fused=True,
                            compile=False, matmul_precision="high")
            except torch.OutOfMemoryError as err:
                runs[name] = {"error": f"out of memory: {str(err).splitlines()[0]}"}
            finally:
                del model
                _reset_peak(device)
        for run in runs.values():
            if "error" in run:
                continue
            run["samples_per_s"] = run["samples"] / run["seconds"]
            run["tokens_per_s"] = run["tokens"] / run["seconds"]
            run["tflops"] = flops * run["samples_per_s"] / 1e12
        for run in runs.values():
            for base in ("hf_bf16", "original"):
                if "samples_per_s" in run and "samples_per_s" in runs.get(base, {}):
                    run[f"vs_{base}"] = run["samples_per_s"] / runs[base]["samples_per_s"]
        result["runs"][f"src{src}_tgt{args.target}"] = {"batch": batch, "flops_per_sample": flops, "runs": runs}
        print(f"\nsource {src} / target {args.target}, project batch {batch}, {flops / 1e12:.2f} TFLOP per sample")
        for name, run in runs.items():
            if "error" in run:
                print(f"  {name:32s} {run['error']}")
                continue
            peak = f"{run['peak_gib']:.1f} GiB" if run["peak_gib"] is not None else "-"
            print(f"  {name:32s} {run['samples_per_s']:8.2f} samples/s {run['tokens_per_s']:10.0f} tok/s "
                  f"{run['tflops']:7.1f} TFLOP/s {peak:>9s}  x{run.get('vs_hf_bf16', math.nan):.2f} vs hf_bf16  "
                  f"x{run.get('vs_original', math.nan):.2f} vs original")

    if args.l4_check and device.type == "cuda":
        result["l4_check"] = l4_check(args.shape, collator, args, device)
        print(f"\nL4 preset under 22 GiB: {result['l4_check']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


def l4_check(shape, collator, args, device) -> dict:
    """`trainer=l4` (batch 1, source 4096, flex, no checkpointing) with the process capped at 22 GiB."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=l4", "paths.output_dir=/tmp/bench_gpu_train"])
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(22 * 2**30 / total)
    src, batch = cfg.data.max_source_length, cfg.data.batch_size
    examples = synthetic_examples((args.warmup + args.steps) * batch + 4, src, args.target, mixed=False)
    loader = torch.utils.data.DataLoader(examples, batch_size=batch, shuffle=True, collate_fn=collator)
    try:
        run = run_project(build_model(shape, device), loader, device, args.steps, args.warmup, attention=cfg.model.attention,
                          fused=True, compile=cfg.model.compile, matmul_precision="high",
                          checkpointing=cfg.model.gradient_checkpointing)
        run["samples_per_s"] = run["samples"] / run["seconds"]
        return {"fits": True, "source": src, "batch": batch, **run}
    except torch.OutOfMemoryError as err:
        return {"fits": False, "source": src, "batch": batch, "error": str(err).splitlines()[0]}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


if __name__ == "__main__":
    main()
