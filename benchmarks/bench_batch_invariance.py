"""How often a summary changes with its batch-mates, with and without `generation.batch_invariant`.

    python benchmarks/bench_batch_invariance.py            # 64 groups x 3 batch compositions, fp32 and int8

The quickstart's tiny LED shape with weights drawn wide (std 0.5, so that groups get distinct summaries) is
exported in fp32 and as the int8_dynamic export. 64 groups of 1-24 shipped reviews (varied lengths) are summarized
alone, then shuffled into batches of 4, of 16, and of 16, 4, 4 in turn; a summary "changed" when its token ids
differ from its ids alone. For each export and each setting of `generation.batch_invariant` (true: each group's
encoder pass alone; false: one encoder pass per batch) it prints the changed share and the generation time, and
writes benchmarks/results/bench_batch_invariance.json. The int8 export is also run with the per-tensor activation
scale of fbgemm's `quantized::linear_dynamic`, the kernel it replaced, as the reference point.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from flavorfusion.compression.quantization import export_quantized
from flavorfusion.config.generation import GenerationConf
from flavorfusion.config.model import ModelSource
from flavorfusion.data.record import ReviewGroup
from flavorfusion.models import quantized
from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.runtime import InferenceRuntime, Placement
from flavorfusion.models.tiny import build_tiny_led, train_tokenizer, widen_weights
from flavorfusion.resources import resource_path

RESULTS = Path(__file__).resolve().parent / "results"
DATA = {"k_top_longest": 24, "max_docs_per_review": 24, "max_source_length": 512, "max_target_length": 64,
        "seed": 42, "pad_to_multiple_of": None}
COMPOSITIONS = ((0, [4]), (1, [16]), (2, [16, 4, 4]))


def exports(directory: Path) -> dict[str, str]:
    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=800)
    fp32 = save_pretrained(widen_weights(build_tiny_led(tokenizer)), tokenizer, str(directory / "fp32"))
    int8 = export_quantized(OmegaConf.create({"method": "int8_dynamic", "exclude": [],
                                              "export_dir": str(directory / "int8")}), fp32)
    return {"fp32": fp32, "int8": int8}


def groups(n: int) -> list[ReviewGroup]:
    with open(resource_path("quickstart_reviews.jsonl"), encoding="utf-8") as f:
        texts = [t for line in f if line.strip() for t in json.loads(line)["reviews"]]
    rng = random.Random(7)
    return [ReviewGroup(f"g{i}", rng.sample(texts, rng.randint(1, 24))) for i in range(n)]


def per_tensor_forward(self, x: torch.Tensor) -> torch.Tensor:
    """The replaced kernel: fbgemm's dynamic int8 with one activation scale for the whole input tensor."""
    if getattr(self, "_per_tensor", None) is None:
        weight = torch._make_per_channel_quantized_tensor(
            self.qweight, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
        self._per_tensor = torch.ops.quantized.linear_prepack(weight, self.bias)
    return torch.ops.quantized.linear_dynamic(x.float(), self._per_tensor, True)


def measure(export: str, items: list[ReviewGroup], batch_invariant: bool) -> dict:
    generation = GenerationConf(max_new_tokens=12, min_new_tokens=4, batch_invariant=batch_invariant)
    runtime = InferenceRuntime(ModelSource.parse(export, "export"), generation, DATA, Placement("cpu")).load()
    features = runtime.encode(items)
    alone = [runtime.generate_ids([f])[0] for f in features]
    changed, total, seconds = 0, 0, 0.0
    for seed, sizes in COMPOSITIONS:
        order = list(range(len(features)))
        random.Random(seed).shuffle(order)
        start, i = 0, 0
        while start < len(order):
            batch = order[start:start + sizes[i % len(sizes)]]
            began = time.perf_counter()
            ids = runtime.generate_ids([features[j] for j in batch])
            seconds += time.perf_counter() - began
            changed += sum(ids[k] != alone[j] for k, j in enumerate(batch))
            total += len(batch)
            start, i = start + len(batch), i + 1
    return {"changed": changed, "summaries": total, "changed_share": changed / total,
            "distinct_alone": len({tuple(a) for a in alone}), "batched_seconds": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_batch_invariance.json")
    args = parser.parse_args()
    items = groups(args.groups)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        built = exports(Path(tmp))
        for kind, export in built.items():
            for invariant in (True, False):
                results[f"{kind} batch_invariant={str(invariant).lower()}"] = measure(export, items, invariant)
        current = quantized.Int8DynamicLinear.forward
        quantized.Int8DynamicLinear.forward = per_tensor_forward
        try:
            results["int8 per-tensor kernel (replaced), batch_invariant=true"] = measure(built["int8"], items, True)
        finally:
            quantized.Int8DynamicLinear.forward = current
    print(f"{'setting':<56} {'changed':>9} {'share':>7} {'batched s':>10}")
    for name, r in results.items():
        print(f"{name:<56} {r['changed']:>4}/{r['summaries']:<4} {100 * r['changed_share']:>6.1f}% "
              f"{r['batched_seconds']:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "bench_batch_invariance", "groups": args.groups,
                                    "compositions": [sizes for _, sizes in COMPOSITIONS], "results": results},
                                   indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
