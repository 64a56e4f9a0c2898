"""LSARS (Chinese e-commerce review summarization) -> review groups `id, reviews, summary`.

Each JSON line is one item: `item_id`, `hq_tokens` (the reference summary's tokens) and
`lq_tokens_list` (its reviews, each a token list). Tokens are joined with "" (Chinese needs no
spaces). Lines are read in chunks of `chunk_size` items, translated (when `translate=` is not none)
and written, so memory is bounded by one chunk whatever the file size. `start_line` / `stop_line`
(0-based, stop exclusive) select a slice of the file, as the original code did for parallel chunks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa

from flavorfusion.data.grouping import NoGrouping
from flavorfusion.data.jsonlines import iter_lines
from flavorfusion.data.sources import ReviewGroupSource
from flavorfusion.data.writer import ReviewGroupWriter
from flavorfusion.errors import ConfigError
from flavorfusion.io import expand_paths

if TYPE_CHECKING:
    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.report import PrepareReport
    from flavorfusion.data.translate import Translator

def join_tokens(tokens: Any) -> str | None:
    """A token list joined with "" (already-joined strings pass through); None if not text."""
    if isinstance(tokens, str):
        return tokens.strip()
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        return "".join(tokens).strip()
    return None


class LsarsSource(ReviewGroupSource):
    """`source=lsars`: one review group per item; summaries are the `hq_tokens` references."""

    name = "lsars"

    def __init__(
        self, path: str | list[str], start_line: int = 0, stop_line: int | None = None, chunk_size: int = 1000
    ):
        self.path = path
        self.start_line = int(start_line)
        self.stop_line = None if stop_line is None else int(stop_line)
        self.chunk_size = int(chunk_size)

    def input_files(self) -> dict[str, list[str]]:
        return {"items": expand_paths(self.path)}

    def write_groups(
        self,
        writer: ReviewGroupWriter,
        *,
        grouping: Grouping,
        translator: Translator,
        report: PrepareReport,
        progress: bool = True,
    ) -> None:
        if not isinstance(grouping, NoGrouping):
            raise ConfigError(
                f"grouping={grouping.name} needs reviewer information that LSARS does not have; use grouping=none"
            )
        files = self.input_files()["items"]
        count = report.add_input("items", files)
        seen: set[str] = set()
        chunk: list[tuple[str, list[str], str | None]] = []
        line_no = -1  # 0-based across all files, like the original code's slicing of the line list
        stopped = False
        for url in files:
            for line in iter_lines(url, desc="lsars", progress=progress):
                line_no += 1
                if self.stop_line is not None and line_no >= self.stop_line:
                    stopped = True
                    break
                count.lines += 1
                if line_no < self.start_line:
                    count.drop("before_start_line")
                    continue
                item, reason = self._parse(line, seen)
                if item is None:
                    count.drop(reason)
                    continue
                count.kept += 1
                chunk.append(item)
                if len(chunk) >= self.chunk_size:
                    writer.write(self._table(chunk, translator))
                    chunk = []
            if stopped:
                break
        writer.write(self._table(chunk, translator))
        report.details["range"] = {"start_line": self.start_line, "stop_line": self.stop_line}
        report.details["translation"] = translator.details()

    @staticmethod
    def _parse(line: bytes, seen: set[str]) -> tuple[tuple[str, list[str], str | None] | None, str]:
        """(item, "") or (None, the reason it is dropped)."""
        if not line or line.isspace():
            return None, "blank_line"
        try:
            record = msgspec.json.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None, "malformed_json"
        if type(record) is not dict:
            return None, "malformed_json"
        item_id = record.get("item_id")
        if item_id is None or "hq_tokens" not in record or not isinstance(record.get("lq_tokens_list"), list):
            return None, "missing_field"
        summary = None if record["hq_tokens"] is None else join_tokens(record["hq_tokens"])
        reviews = [join_tokens(tokens) for tokens in record["lq_tokens_list"]]
        if (record["hq_tokens"] is not None and summary is None) or any(r is None for r in reviews):
            return None, "missing_field"
        reviews = [r for r in reviews if r]
        if not reviews:
            return None, "no_reviews"
        item_id = str(item_id)
        if item_id in seen:
            return None, "duplicate"
        seen.add(item_id)
        return (item_id, reviews, summary or None), ""

    @staticmethod
    def _table(chunk: list[tuple[str, list[str], str | None]], translator: Translator) -> pa.Table:
        ids = [item_id for item_id, _, _ in chunk]
        reviews = [r for _, r, _ in chunk]
        summaries = [s for _, _, s in chunk]
        originals: list[list[str]] | list[None] = [None] * len(chunk)
        summary_originals: list[str | None] = [None] * len(chunk)
        if translator.enabled and chunk:
            # one call per chunk: the translator dedupes, looks up its cache and batches requests
            texts = [t for r in reviews for t in r] + [s for s in summaries if s]
            english = dict(zip(texts, translator.translate(texts), strict=True))
            originals, summary_originals = reviews, summaries
            reviews = [[english[t] for t in r] for r in reviews]
            summaries = [english[s] if s else s for s in summaries]
        # `originals`: the untranslated texts when translate= is not none (else null: `reviews` are the originals);
        # the writer adds the record's other columns
        return pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "reviews": pa.array(reviews, pa.list_(pa.string())),
                "summary": pa.array(summaries, pa.string()),
                "n_reviews": pa.array([len(r) for r in reviews], pa.int32()),
                "originals": pa.array(originals, pa.list_(pa.string())),
                "summary_original": pa.array(summary_originals, pa.string()),
            }
        )
