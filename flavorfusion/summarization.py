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
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import ReviewTable
from flavorfusion.errors import ConfigError, DataError
from flavorfusion.io import atomic_output
from flavorfusion.models.inference import inference_summarizer

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
        ("model", pa.string()),  # the model source it was loaded from (model.name_or_path)
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


def written_files(output: str) -> list[str]:
    """The output (if any) and every complete part, oldest first."""
    return ([output] if os.path.isfile(output) else []) + sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))


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
    files = written_files(output)
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
    files = written_files(output)
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
    model, tokenizer = load_pretrained(cfg.model.name_or_path)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    # hashed as loaded, before placing: the same weights give the same hash on any device and dtype
    provenance = {"model": str(cfg.model.name_or_path), "model_sha256": weights_sha256(model),
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

    summarizer, device, dtype, _ = inference_summarizer(model, tokenizer, cfg.data, device=cfg.device, dtype=cfg.dtype,
                                                        attention=cfg.model.attention)
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
                summaries += summarizer.generate([features[i] for i in batch], **generation)
                bar.update(len(batch))
            write_part(_output_rows([todo[i] for i in part], summaries, provenance), parts_dir(output), part_index)
            generated += len(part)
    rows = merge(output)
    seconds = time.perf_counter() - start
    log.info("wrote %s: %d rows (%d new, %.2f rows/s)", output, rows, generated, generated / seconds)
    return SummarizeReport(output, len(groups), already, generated, dict(skipped), seconds)
