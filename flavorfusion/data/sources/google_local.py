"""Google Local 2021 (UCSD) reviews + business metadata -> review groups per (restaurant, cultural group).

Two passes over two inputs: the metadata is read whole (restaurants fit in memory), then the reviews
are streamed line by line and only what is kept stays in memory: per restaurant, at most
`max_reviews_per_business` reviews (the most recent), plus one hash per accepted review for
duplicate detection. Each review line ends up in the report as kept or dropped with exactly one
reason, checked in this order: blank_line; not_restaurant / unknown_business as soon as the line's
gmap_id is known (read from the bytes for most lines, which are then never parsed); malformed_json;
missing_field; null_text; too_short / too_long; duplicate; over_cap; group_too_small.
docs/prepare.md lists what each reason means.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
from msgspec import UNSET

from flavorfusion.data.grouping import ReviewColumns
from flavorfusion.data.jsonlines import gc_paused, iter_lines, open_lines
from flavorfusion.data.record import SCHEMA
from flavorfusion.data.sources import ReviewGroupSource
from flavorfusion.data.sources.language_id import LanguageIdentifier
from flavorfusion.data.writer import ReviewGroupWriter
from flavorfusion.errors import ConfigError
from flavorfusion.io import expand_paths

if TYPE_CHECKING:
    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.report import PrepareReport
    from flavorfusion.data.translate import Translator

TRANSLATED_MARK = "(Translated by Google)"
ORIGINAL_MARK = "(Original)"
UNTRANSLATED_LANGUAGE = "en"
_NUMBER = frozenset((int, float))
# malformed JSON, invalid UTF-8 in a field that is read, valid JSON that is not an object
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


class _ReviewLine(msgspec.Struct):
    """The fields read from a review line. Any others (`pics`, `resp`, ...) are skipped without being
    decoded; an absent field stays UNSET, so absent and null can be told apart."""

    gmap_id: object = UNSET
    user_id: object = UNSET
    time: object = UNSET
    text: object = UNSET
    name: object = None


_decode_review_line = msgspec.json.Decoder(_ReviewLine).decode
REVIEW_DROP_REASONS = (
    "blank_line",
    "malformed_json",
    "missing_field",
    "unknown_business",
    "not_restaurant",
    "null_text",
    "too_short",
    "too_long",
    "duplicate",
    "over_cap",
)

# write this many reviews per Parquet row group: bounds the extra Arrow copy of the kept text
_WRITE_BATCH_REVIEWS = 50_000


# a kept review: (time, line number, English text, original text or None, reviewer name or None)
TIME, LINE, TEXT, ORIGINAL, REVIEWER = range(5)

# How json.dumps (and so the UCSD files) writes the key. Inside a JSON string a quote is escaped, so
# these bytes can only be the key itself; other spellings simply take the full-parse path.
_GMAP_KEY = b'"gmap_id": "'
_GMAP_VALUE_AT = len(_GMAP_KEY)


def split_translation(text: str) -> tuple[str, str | None]:
    """`(Translated by Google) <English>\\n\\n(Original)\\n<original>` -> (English, original).

    Untranslated text comes back as (text, None). Both orders of the two parts are understood.
    """
    if TRANSLATED_MARK not in text:
        return text, None
    head, found, tail = text.partition(ORIGINAL_MARK)
    if not found:  # the marker without an original: keep the English
        return text.replace(TRANSLATED_MARK, "", 1).strip(), None
    if TRANSLATED_MARK in head:
        english, original = head.replace(TRANSLATED_MARK, "", 1), tail
    else:
        original, _, english = tail.partition(TRANSLATED_MARK)
    original = original.strip()
    return english.strip(), original or None


class GoogleLocalSource(ReviewGroupSource):
    """`source=google_local`: restaurants by category, filtered and capped reviews, grouped."""

    name = "google_local"

    def __init__(
        self,
        reviews: str | list[str],
        meta: str | list[str],
        categories: Iterable[str],
        min_chars: int = 20,
        max_chars: int = 5000,
        max_reviews_per_business: int | None = 100,
        language_id: LanguageIdentifier | None = None,
    ):
        self.reviews = reviews
        self.meta = meta
        self.categories = frozenset(categories)
        if not self.categories:
            raise ConfigError("source.categories is empty: no business could count as a restaurant")
        self.min_chars = int(min_chars)
        self.max_chars = int(max_chars)
        if not 0 <= self.min_chars < self.max_chars:
            raise ConfigError(
                f"need 0 <= source.min_chars < source.max_chars, got {self.min_chars} and {self.max_chars}"
            )
        if max_reviews_per_business is not None and int(max_reviews_per_business) < 1:
            raise ConfigError("source.max_reviews_per_business must be positive (or null for no cap)")
        self.max_reviews = None if max_reviews_per_business is None else int(max_reviews_per_business)
        self.language_id = language_id

    def input_files(self) -> dict[str, list[str]]:
        return {"meta": expand_paths(self.meta), "reviews": expand_paths(self.reviews)}

    # -- pass 1: which businesses are restaurants --------------------------------------------------
    def _read_meta(self, files: list[str], report: PrepareReport, progress: bool):
        count = report.add_input("meta", files)
        restaurants: dict[str, tuple[str | None, str | None]] = {}
        # other businesses (UTF-8 bytes, as the fast path reads them from the review lines), kept
        # only to tell `not_restaurant` from `unknown_business`
        others: set[bytes] = set()
        categories = self.categories
        lines = 0
        for url in files:
            for line in iter_lines(url, desc="meta", progress=progress):
                lines += 1
                if not line or line.isspace():
                    count.drop("blank_line")
                    continue
                try:
                    record = msgspec.json.decode(line)
                except DECODE_ERRORS:
                    count.drop("malformed_json")
                    continue
                if type(record) is not dict:
                    count.drop("malformed_json")
                    continue
                gmap_id = record.get("gmap_id")
                if not isinstance(gmap_id, str) or "category" not in record:
                    count.drop("missing_field")
                    continue
                if gmap_id in restaurants or gmap_id.encode() in others:
                    count.drop("duplicate")
                    continue
                category = record["category"]
                if category is None:
                    count.drop("null_category")
                    others.add(gmap_id.encode())
                    continue
                if isinstance(category, str):
                    category = [category]
                if isinstance(category, list) and not categories.isdisjoint(
                    c for c in category if isinstance(c, str)
                ):
                    restaurants[gmap_id] = (record.get("name"), record.get("address"))
                    count.kept += 1
                else:
                    others.add(gmap_id.encode())
                    count.drop("not_restaurant")
        count.lines = lines
        return restaurants, others

    # -- pass 2: stream the reviews, keep the most recent N per restaurant -----------------------
    def _read_reviews(self, files, restaurants, others, report: PrepareReport, progress: bool):
        """Per restaurant (gmap_id), its kept reviews as (time, line number, English text, original
        text or None, reviewer name or None) tuples."""
        count = report.add_input("reviews", files)
        # a plain dict (not the Counter) in the hot loop: faster item updates
        dropped: dict[str, int] = dict.fromkeys(REVIEW_DROP_REASONS, 0)
        # restaurant gmap_id (UTF-8 bytes, as read from a line) -> its kept reviews: a plain list
        # until it holds `cap` reviews, then a min-heap on (time, line number), oldest first out;
        # the line number breaks ties, so the strings are never compared
        kept: dict[bytes, list[tuple]] = {gmap_id.encode(): [] for gmap_id in restaurants}
        seen: set[int] = set()
        min_chars, max_chars, cap = self.min_chars, self.max_chars, self.max_reviews
        decode = _decode_review_line
        heapify, pushpop = heapq.heapify, heapq.heappushpop
        lines = 0
        for url in files:
            with open_lines(url, desc="reviews", progress=progress) as file:
                for line in file.lines:
                    lines += 1
                    if not lines & 0x3FFF:
                        file.progress()
                    if line.isspace() or not line:
                        dropped["blank_line"] += 1
                        continue
                    # Fast path: read the gmap_id from the bytes (the key comes last in Google Local
                    # lines, so search from the end). Lines of other businesses, most of a file, are
                    # then dropped without being parsed. Inlined: this runs for every line.
                    reviews = None
                    at = line.rfind(_GMAP_KEY)
                    if at >= 0:
                        at += _GMAP_VALUE_AT
                        end = line.find(b'"', at)
                        if end > at:
                            business = line[at:end]
                            reviews = kept.get(business)
                            if reviews is None and b"\\" not in business:
                                dropped["not_restaurant" if business in others else "unknown_business"] += 1
                                continue
                    try:
                        record = decode(line)
                    except DECODE_ERRORS:
                        dropped["malformed_json"] += 1
                        continue
                    if reviews is None:  # the bytes did not tell: ask the parsed record
                        gmap_id = record.gmap_id
                        if gmap_id.__class__ is not str:
                            dropped["missing_field"] += 1
                            continue
                        business = gmap_id.encode()
                        reviews = kept.get(business)
                        if reviews is None:
                            dropped["not_restaurant" if business in others else "unknown_business"] += 1
                            continue
                    user_id, time, text = record.user_id, record.time, record.text
                    if user_id is None or user_id is UNSET or text is UNSET or time.__class__ not in _NUMBER:
                        dropped["missing_field"] += 1
                        continue
                    if text is None:
                        dropped["null_text"] += 1
                        continue
                    if text.__class__ is not str:
                        dropped["missing_field"] += 1
                        continue
                    english, original = split_translation(text) if TRANSLATED_MARK in text else (text, None)
                    n = len(english)
                    if n < min_chars:
                        dropped["too_short"] += 1
                        continue
                    if n >= max_chars:
                        dropped["too_long"] += 1
                        continue
                    # 64-bit hashes, not the strings: memory stays per review, not per character
                    key = hash((user_id, business, text))
                    if key in seen:
                        dropped["duplicate"] += 1
                        continue
                    seen.add(key)
                    n = len(reviews)
                    if cap is None or n < cap:
                        reviews.append((time, lines, english, original, record.name))
                        if n + 1 == cap:
                            heapify(reviews)
                    elif time < reviews[0][0]:  # older than all it competes with: out at once
                        dropped["over_cap"] += 1
                    else:
                        pushpop(reviews, (time, lines, english, original, record.name))
                        dropped["over_cap"] += 1  # the oldest of cap + 1 went
        count.lines = lines
        count.dropped.update({reason: n for reason, n in dropped.items() if n})
        return {gmap_id: kept[gmap_id.encode()] for gmap_id in restaurants if kept[gmap_id.encode()]}

    def write_groups(
        self,
        writer: ReviewGroupWriter,
        *,
        grouping: Grouping,
        translator: Translator,
        report: PrepareReport,
        progress: bool = True,
    ) -> None:
        if translator.enabled:
            raise ConfigError(
                "translate= applies to source=lsars; Google Local reviews already carry Google's "
                "English translation (use translate=none)"
            )
        files = self.input_files()
        with gc_paused():
            self._write_groups(files, writer, grouping, report, progress)

    def _write_groups(self, files, writer, grouping, report, progress) -> None:
        restaurants, others = self._read_meta(files["meta"], report, progress)
        kept = self._read_reviews(files["reviews"], restaurants, others, report, progress)
        del others

        # flatten, businesses in metadata order, each one's reviews newest first
        businesses = [gmap_id for gmap_id in restaurants if gmap_id in kept]
        reviews: list[tuple] = []
        spans: list[tuple[int, int]] = []
        for gmap_id in businesses:
            heap = kept.pop(gmap_id)
            heap.sort(reverse=True)
            spans.append((len(reviews), len(reviews) + len(heap)))
            reviews.extend(heap)
        del kept

        columns = self._columns(reviews, progress)
        labels, confidences = grouping.assign(columns)
        report.details["grouping"] = grouping.details()

        count = report.inputs["reviews"]
        rows_per_group: dict[str, int] = {}
        batch: _RowBatch = _RowBatch()
        groups_too_small = businesses_written = 0
        for gmap_id, (start, stop) in zip(businesses, spans, strict=True):
            by_label: dict[str, list[int]] = {}
            for i in range(start, stop):
                by_label.setdefault(labels[i], []).append(i)
            name, address = restaurants[gmap_id]
            rows_before = batch.n_rows
            for label in sorted(by_label):
                members = by_label[label]
                if len(members) < grouping.min_group_size:
                    count.drop("group_too_small", len(members))
                    groups_too_small += 1
                    continue
                count.kept += len(members)
                rows_per_group[label] = rows_per_group.get(label, 0) + 1
                scores = [c for i in members if (c := confidences[i]) is not None]
                batch.add(
                    id=f"{gmap_id}:{label}",
                    business_id=gmap_id,
                    name=name,
                    address=address,
                    group=label,
                    group_confidence=sum(scores) / len(scores) if scores else None,
                    members=members,
                )
            businesses_written += batch.n_rows > rows_before
            if batch.n_reviews >= _WRITE_BATCH_REVIEWS:
                writer.write(batch.table(columns))
                batch = _RowBatch()
        writer.write(batch.table(columns))
        report.written["businesses"] = businesses_written
        report.written["rows_per_group"] = dict(sorted(rows_per_group.items(), key=lambda kv: -kv[1]))
        report.written["groups_too_small"] = groups_too_small

    def _columns(self, reviews: list[tuple], progress: bool) -> ReviewColumns:
        originals = [r[ORIGINAL] for r in reviews]
        languages: list[str | None] = [UNTRANSLATED_LANGUAGE if o is None else None for o in originals]
        confidences: list[float | None] = [None] * len(reviews)
        translated = [i for i, o in enumerate(originals) if o is not None]
        if self.language_id is not None and translated:
            codes, scores = self.language_id.identify([originals[i] for i in translated], progress=progress)
            for i, code, score in zip(translated, codes, scores, strict=True):
                languages[i], confidences[i] = code, score
        return ReviewColumns(
            texts=[r[TEXT] for r in reviews],
            originals=originals,
            languages=languages,
            language_confidences=confidences,
            reviewers=[r[REVIEWER] for r in reviews],
            languages_identified=self.language_id is not None,
        )


class _RowBatch:
    """Rows collected for one write: scalar columns, and member review indices per row."""

    def __init__(self):
        self.scalars: dict[str, list] = {
            k: [] for k in ("id", "business_id", "name", "address", "group", "group_confidence")
        }
        self.members: list[list[int]] = []
        self.n_reviews = 0

    def add(self, *, members: list[int], **scalars) -> None:
        for key, value in scalars.items():
            self.scalars[key].append(value)
        self.members.append(members)
        self.n_reviews += len(members)

    @property
    def n_rows(self) -> int:
        return len(self.members)

    def table(self, columns: ReviewColumns) -> pa.Table:
        offsets = [0]
        flat: list[int] = []
        for members in self.members:
            flat.extend(members)
            offsets.append(len(flat))
        offsets_array = pa.array(offsets, pa.int32())

        def listed(values: list) -> pa.ListArray:
            return pa.ListArray.from_arrays(offsets_array, pa.array([values[i] for i in flat], pa.string()))

        n = len(self.members)
        return pa.table(
            {
                **{k: pa.array(v, SCHEMA.field(k).type) for k, v in self.scalars.items()},
                "n_reviews": pa.array([len(m) for m in self.members], pa.int32()),
                "reviews": listed(columns.texts),
                "originals": listed(columns.originals),
                "languages": listed(columns.languages),
                "summary": pa.nulls(n, pa.string()),
                "summary_original": pa.nulls(n, pa.string()),
            },
            schema=SCHEMA,
        )
