"""Padding waste and training throughput: the original code's batching against FlavorFusion's.

Original recipe (the HF Trainer script): batch 1, every label padded to max_target_length.
FlavorFusion: labels padded to the longest in the batch, inputs to a multiple of the attention window,
batches of similar length (`data.group_by_length=true`).

Both run in this process on the same examples: the quickstart review groups (shipped) or, with
--fewsum, real Amazon reviews from ../shared/data/fewsum_amazon. The model is a small LED (random
weights: speed only) so it runs on a 2-core CPU; on a GPU the same ratio of wasted tokens applies.

    python benchmarks/bench_batching.py [--fewsum] [--steps 20]
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from flavorfusion.data.encoding import DOC_SEP, LABEL_PAD_ID, PrimeraCollator, encode_documents, encode_target
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.models.tiny import build_tiny_led, train_tokenizer
from flavorfusion.resources import resource_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fewsum_amazon"


def load_groups(fewsum: bool) -> list[ReviewGroup]:
    """Review groups, one per (group, reference): the original code trained on each reference separately."""
    if fewsum:
        table = ReviewTable([str(SHARED / f"{split}.csv") for split in ("train", "val", "test")], format="tsv",
                            columns={"id": "group_id", "reviews": [f"rev{i}" for i in range(1, 9)],
                                     "summary": [f"summ{i}" for i in range(1, 4)]})
    else:
        table = ReviewTable(resource_path("quickstart_reviews.jsonl"),
                            columns={"id": "id", "reviews": "reviews", "summary": "summary"})
    groups, _ = table.groups()
    return [ReviewGroup(g.id, g.reviews, [reference]) for g in groups for reference in g.summary]


def original_batches(examples, max_source_length, max_target_length, pad_id):
    """Batch 1; source padded to its own length (LED pads to the window anyway), labels to max_target_length."""
    for source, labels in examples:
        padded = labels + [LABEL_PAD_ID] * (max_target_length - len(labels))
        window = 512 if max_source_length >= 512 else max_source_length
        length = -(-len(source) // window) * window
        yield {"input_ids": torch.tensor([source + [pad_id] * (length - len(source))]),
               "attention_mask": torch.tensor([[1] * len(source) + [0] * (length - len(source))]),
               "labels": torch.tensor([padded])}


def ours_batches(examples, batch_size, collator, seed=0):
    lengths = [len(s) for s, _ in examples]
    sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    order = list(sampler)
    for i in range(0, len(order), batch_size):
        features = [{"input_ids": examples[j][0], "labels": examples[j][1]} for j in order[i : i + batch_size]]
        yield collator(features)


def waste(batches) -> dict:
    src_tokens = src_real = tgt_tokens = tgt_real = 0
    for b in batches:
        src_tokens += b["input_ids"].numel()
        src_real += int(b["attention_mask"].sum())
        tgt_tokens += b["labels"].numel()
        tgt_real += int((b["labels"] != LABEL_PAD_ID).sum())
    return {"source_padding": 1 - src_real / src_tokens, "target_padding": 1 - tgt_real / tgt_tokens,
            "source_tokens": src_tokens, "target_tokens": tgt_tokens}


def throughput(model, batches, steps: int) -> float:
    """Training samples per second over `steps` optimizer steps (after one warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = iter(batches)
    samples, start = 0, None
    for step in range(steps + 1):
        batch = next(batches)
        if step == 1:
            start = time.perf_counter()
        if step >= 1:
            samples += batch["input_ids"].shape[0]
        loss = model(**{k: v for k, v in batch.items() if k != "global_attention_mask"},
                     global_attention_mask=batch.get("global_attention_mask")).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fewsum", action="store_true", help="real reviews from ../shared (not shipped)")
    parser.add_argument("--max-source-length", type=int, default=1024)
    parser.add_argument("--max-target-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/results/batching.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    tokenizer = train_tokenizer(resource_path("quickstart_reviews.jsonl"), vocab_size=2000)
    groups = load_groups(args.fewsum)
    examples = [(encode_documents(tokenizer, g.reviews, args.max_source_length),
                 encode_target(tokenizer, g.summary[0], args.max_target_length)) for g in groups]
    sep = tokenizer.convert_tokens_to_ids(DOC_SEP)
    collator = PrimeraCollator(tokenizer.pad_token_id, sep, pad_to_multiple_of=64)

    result = {"data": "fewsum" if args.fewsum else "quickstart", "examples": len(examples), **vars(args)}
    result["original"] = waste(original_batches(examples, args.max_source_length, args.max_target_length,
                                                tokenizer.pad_token_id))
    result["ours"] = waste(ours_batches(examples, args.batch_size, collator))

    # a small LED (window 64) so a CPU can train it: 4+4 layers, d_model 256
    model = build_tiny_led(tokenizer, d_model=256, layers=4, heads=4, ffn_dim=1024, attention_window=64,
                           max_source_positions=args.max_source_length, max_target_positions=args.max_target_length)
    model.train()
    cycle = examples * (1 + (args.steps + 1) * args.batch_size // len(examples))
    result["original"]["samples_per_s"] = throughput(
        model, original_batches(cycle, args.max_source_length, args.max_target_length, tokenizer.pad_token_id),
        args.steps * args.batch_size)
    result["ours"]["samples_per_s"] = throughput(model, ours_batches(cycle, args.batch_size, collator), args.steps)
    result["speedup"] = result["ours"]["samples_per_s"] / result["original"]["samples_per_s"]
    result["target_tokens_ratio"] = result["original"]["target_tokens"] / result["ours"]["target_tokens"]

    for name in ("original", "ours"):
        r = result[name]
        print(f"{name:9s} source padding {r['source_padding']:6.1%}  target padding {r['target_padding']:6.1%}  "
              f"{r['samples_per_s']:.2f} samples/s")
    print(f"decoder tokens: {result['target_tokens_ratio']:.1f}x fewer; training throughput {result['speedup']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
