"""Summaries for every review group of a table: one row per (restaurant, cultural group), batched by length,
written in parts so that a killed run resumes where it stopped. `python -m flavorfusion.summarize` runs it.

Parts live in `<output>.parts/`, each written under a temporary name and renamed, so a killed run loses at
most the part it was generating. When every group has its summary, the parts (and a previous output, if
any) are merged into `<output>` (Parquet), again through a temporary file, and the parts are removed. A
rerun skips the groups already in `<output>` or in a part: after a complete run it writes nothing.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from flavorfusion.checks import validate_summarize
from flavorfusion.data.encoding import DOC_SEP, ExampleEncoder, PrimeraCollator
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output
from flavorfusion.models.loading import attention_window

log = logging.getLogger(__name__)

# the record's fields copied to each output row when the input has them
CARRIED = ("business_id", "name", "group", "group_confidence", "n_reviews")
OUTPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("business_id", pa.string()),
        ("name", pa.string()),
        ("group", pa.string()),
        ("group_confidence", pa.float64()),
        ("n_reviews", pa.int32()),
        ("summary", pa.string()),
        ("model", pa.string()),  # the path, Hub name or W&B artifact it was loaded from
        ("model_sha256", pa.string()),  # of its weights: two outputs from the same weights say so
        ("generation", pa.string()),  # the generation settings, as JSON
    ]
)


@dataclass
class SummarizeReport:
    """What a run did: rows already done, generated now, skipped (by reason), and where the output is."""

    output: str
    total: int
    already_done: int
    generated: int
    skipped: dict
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0


def parts_dir(output: str) -> str:
    return f"{output}.parts"


def weights_sha256(model: torch.nn.Module) -> str:
    """A content hash of the weights (names, dtypes, shapes and bytes), whatever the model was loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def done_ids(output: str) -> tuple[set[str], list[dict]]:
    """Ids already summarized (the output and every complete part) and the provenance they were written with."""
    files = ([output] if os.path.isfile(output) else []) + sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))
    ids: set[str] = set()
    provenance = []
    for path in files:
        try:
            table = pq.read_table(path, columns=["id", "model_sha256", "generation"])
        except (pa.ArrowInvalid, KeyError) as err:
            raise DataError(f"{path} is not a summarize output ({err}); use another output or remove it") from None
        ids.update(table.column("id").to_pylist())
        if table.num_rows:
            provenance.append({"path": path, "model_sha256": table.column("model_sha256")[0].as_py(),
                               "generation": table.column("generation")[0].as_py()})
    return ids, provenance


def check_same_provenance(provenance: list[dict], model_sha256: str, generation: str, output: str) -> None:
    for found in provenance:
        if found["model_sha256"] != model_sha256 or found["generation"] != generation:
            raise ConfigError(f"output={output}: {found['path']} was written by another model or other generation "
                              "settings; give a new output or remove the old one")


class GroupSummarizer:
    """A loaded export generating summaries for review groups, in PRIMERA's input layout."""

    def __init__(self, model, tokenizer, data: DictConfig, generation: dict, device: torch.device):
        self.model, self.tokenizer, self.generation, self.device = model, tokenizer, generation, device
        self.encoder = ExampleEncoder(tokenizer, ReviewSelection(data.k_top_longest, data.max_docs_per_review, data.seed),
                                      data.max_source_length, data.max_target_length)
        self.collator = PrimeraCollator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(DOC_SEP),
                                        pad_to_multiple_of=data.pad_to_multiple_of or attention_window(model.config))

    def encode(self, groups: list[ReviewGroup]) -> list[dict]:
        return [{"input_ids": self.encoder.validation_example(g)["input_ids"]} for g in groups]

    @torch.inference_mode()
    def summarize(self, features: list[dict]) -> list[str]:
        from flavorfusion.models.generation import generate_ids

        batch = {k: v.to(self.device) for k, v in self.collator(features).items() if torch.is_tensor(v)}
        ids = generate_ids(self.model, batch, **self.generation)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def pick_device(device: str, dtype: str, quantized: bool) -> tuple[torch.device, torch.dtype]:
    """`auto`: the GPU in bf16 when there is one, else the CPU in fp32 (quantized exports run on the CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not quantized else "cpu"
    if quantized and device != "cpu":
        raise ConfigError(f"device={device}: quantized exports run on the CPU; set device=cpu or use the fp export")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        return torch.device(device), getattr(torch, dtype)
    except (RuntimeError, AttributeError):
        raise ConfigError(f"device={device} dtype={dtype}: not a torch device and dtype") from None


def _output_rows(groups: list[ReviewGroup], summaries: list[str], provenance: dict) -> pa.Table:
    rows = [{"id": g.id, **{k: getattr(g, k) for k in CARRIED}, "summary": s, **provenance}
            for g, s in zip(groups, summaries, strict=True)]
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


def write_part(table: pa.Table, directory: str, index: int) -> str:
    path = os.path.join(directory, f"part-{index:05d}-{time.time_ns()}.parquet")
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


def merge(output: str) -> int:
    """The output and every part as one Parquet file (first row of each id kept), written atomically."""
    files = ([output] if os.path.isfile(output) else []) + sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))
    table = pa.concat_tables([pq.read_table(f).cast(OUTPUT_SCHEMA) for f in files]) if files else OUTPUT_SCHEMA.empty_table()
    seen: set[str] = set()
    keep = [i for i, gid in enumerate(table.column("id").to_pylist()) if not (gid in seen or seen.add(gid))]
    table = table.take(keep)
    with atomic_output(output) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    shutil.rmtree(parts_dir(output), ignore_errors=True)
    return table.num_rows


def summarize(cfg: DictConfig) -> SummarizeReport:
    from flavorfusion.models.loading import load_pretrained

    validate_summarize(cfg)  # before the model loads or anything generates
    output = str(cfg.output)
    table = ReviewTable.from_config(cfg.data)
    groups, skipped = table.groups()  # unknown columns fail here, naming the column and the file
    start = time.perf_counter()
    model, tokenizer = load_pretrained(cfg.model.path, cfg.model.get("wandb_artifact"), key="model.path")
    # a quantized export holds integer weights (int8, packed int4): it runs as loaded, on the CPU
    quantized = any(not t.is_floating_point() for t in model.state_dict().values())
    device, dtype = pick_device(cfg.device, cfg.dtype, quantized)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    provenance = {"model": str(cfg.model.get("wandb_artifact") or cfg.model.path), "model_sha256": weights_sha256(model),
                  "generation": json.dumps(generation, sort_keys=True)}
    done, found = done_ids(output)
    check_same_provenance(found, provenance["model_sha256"], provenance["generation"], output)
    todo = [g for g in groups if g.id not in done]
    already = len(groups) - len(todo)
    if not todo:
        if found and any(f["path"] != output for f in found):
            merge(output)  # a run killed after its last part: only the merge was missing
        log.info("nothing to do: all %d review groups of data.path are in %s", len(groups), output)
        return SummarizeReport(output, len(groups), already, 0, dict(skipped), time.perf_counter() - start)

    if not quantized:
        model = model.to(device=device, dtype=dtype)
    model.eval()
    if cfg.model.get("attention", "hf") != "hf":
        from flavorfusion.models.attention import set_encoder_attention

        set_encoder_attention(model, cfg.model.attention)
    summarizer = GroupSummarizer(model, tokenizer, cfg.data, generation, device)
    features = summarizer.encode(todo)
    # longest first: similar lengths share a batch (little padding), and memory peaks in the first batch
    order = sorted(range(len(todo)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
    os.makedirs(parts_dir(output), exist_ok=True)
    log.info("summarizing %d review groups (%d already done) on %s/%s into %s", len(todo), already, device.type,
             str(dtype).removeprefix("torch."), output)
    generated = 0
    start = time.perf_counter()  # rows/s counts generation, not loading
    with tqdm(total=len(todo), unit="row", desc="summarize", disable=None if cfg.progress else True) as bar:
        for part_index, part_start in enumerate(range(0, len(order), cfg.part_size)):
            part = order[part_start:part_start + cfg.part_size]
            summaries: list[str] = []
            for b in range(0, len(part), cfg.batch_size):
                batch = part[b:b + cfg.batch_size]
                summaries += summarizer.summarize([features[i] for i in batch])
                bar.update(len(batch))
            write_part(_output_rows([todo[i] for i in part], summaries, provenance), parts_dir(output), part_index)
            generated += len(part)
    rows = merge(output)
    seconds = time.perf_counter() - start
    log.info("wrote %s: %d rows (%d new, %.2f rows/s)", output, rows, generated, generated / seconds)
    return SummarizeReport(output, len(groups), already, generated, dict(skipped), seconds)
