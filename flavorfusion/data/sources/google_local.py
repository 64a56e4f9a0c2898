"""Google Local 2021 (UCSD) reviews + business metadata -> review groups per (restaurant, cultural group).

Two passes over two inputs: the metadata is read whole (restaurants fit in memory), then the reviews
are streamed line by line and only what is kept stays in memory: per restaurant, at most
`max_reviews_per_business` reviews (the most recent), plus one hash per accepted review for
duplicate detection. Each review line ends up in the report as kept or dropped with exactly one
reason, checked in this order: blank_line; not_restaurant / unknown_business as soon as the line's
gmap_id is known (read from the bytes for most lines, which are then never parsed); malformed_json;
missing_field; null_text; too_short / too_long; duplicate; over_cap; group_too_small.
docs/prepare.md lists what each reason means.

The rules are functions that both engines call (`engine=local` here, `engine=beam` in
`flavorfusion.data.sources.google_local_beam`), so the two cannot drift apart:
  `scan_meta` + `merge_indexes`  the metadata, file by file, into one `BusinessIndex`
  `scan_reviews`                 per review line: parse, filter, yield the candidates of restaurants
  `RecentReviews`                per restaurant, candidates in line order: duplicates, the cap
  `group_rows`                   per batch of restaurants: language, grouping, minimum group size, rows
A review's place in the input is one integer, `line_order(file index, line number)`: the cap breaks
ties in time with it, and the first of duplicate lines is the one kept, whatever engine reads them.
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import msgspec
import pyarrow as pa
from msgspec import UNSET

from flavorfusion.data.grouping import ReviewColumns
from flavorfusion.data.jsonlines import gc_paused, open_lines
from flavorfusion.data.record import SCHEMA
from flavorfusion.data.report import input_tally
from flavorfusion.data.sources import ReviewGroupSource
from flavorfusion.data.sources.language_id import LanguageIdentifier
from flavorfusion.data.writer import ReviewGroupWriter
from flavorfusion.errors import ConfigError
from flavorfusion.io import expand_paths
from flavorfusion.tally import Tally

if TYPE_CHECKING:
    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.report import PrepareReport
    from flavorfusion.data.translate import Translator

TRANSLATED_MARK = "(Translated by Google)"
ORIGINAL_MARK = "(Original)"
UNTRANSLATED_LANGUAGE = "en"
_NUMBER = frozenset((int, float))
# a user_id of these types is kept (hashed for duplicates); absent, null, a list or an object is missing
_USER_ID = frozenset((str, int, float, bool))
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
_heapify, _heappushpop = heapq.heapify, heapq.heappushpop  # bound once: RecentReviews.add runs per candidate
T = TypeVar("T")
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


# a kept review: (time, line order, English text, original text or None, reviewer name or None)
TIME, ORDER, TEXT, ORIGINAL, REVIEWER = range(5)
# a review's line order: file index << ORDER_BITS | line number in the file (from 1)
ORDER_BITS = 40

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


def _no_progress() -> None:
    pass


def _text_or_none(value: object) -> str | None:
    """A display field (name, address) as text; anything else (a number, a list) is unknown."""
    return value if isinstance(value, str) else None


def line_order(file_index: int, line_number: int = 1) -> int:
    """One integer for a line's place in the input: files in the order listed, then lines in a file."""
    return (file_index << ORDER_BITS) | line_number


def refuse_translation(translator: Translator) -> None:
    if translator.enabled:
        raise ConfigError(
            "translate= applies to source=lsars; Google Local reviews already carry Google's "
            "English translation (use translate=none)"
        )


# -- pass 1: which businesses are restaurants ------------------------------------------------------
@dataclass
class BusinessIndex:
    """What the metadata says: restaurants (gmap_id -> name, address) and the other businesses it
    lists (gmap_id -> why their line was dropped), the latter only to tell `not_restaurant` from
    `unknown_business`; plus the tally of the metadata lines."""

    restaurants: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def tally(self) -> Tally:
        return input_tally("meta", self.lines, self.kept, self.dropped)

    def lookups(self, restaurant_value: Callable[[str], T]) -> tuple[dict[bytes, T], frozenset[bytes]]:
        """For `scan_reviews`: restaurant ids as UTF-8 bytes (as the fast path reads them from the
        lines) -> `restaurant_value(gmap_id)`, and the other businesses' ids as bytes."""
        restaurants = {gmap_id.encode(): restaurant_value(gmap_id) for gmap_id in self.restaurants}
        return restaurants, frozenset(gmap_id.encode() for gmap_id in self.others)


def scan_meta(lines: Iterable[bytes], categories: frozenset[str]) -> BusinessIndex:
    """The index of one metadata file; a business is a restaurant when any of its categories is in
    `categories`. A gmap_id seen before in the file is a duplicate, whatever its first line said."""
    index = BusinessIndex()
    restaurants, others, dropped = index.restaurants, index.others, index.dropped
    lines_read = 0
    for line in lines:
        lines_read += 1
        if not line or line.isspace():
            dropped["blank_line"] += 1
            continue
        try:
            record = msgspec.json.decode(line)
        except DECODE_ERRORS:
            dropped["malformed_json"] += 1
            continue
        if type(record) is not dict:
            dropped["malformed_json"] += 1
            continue
        gmap_id = record.get("gmap_id")
        if not isinstance(gmap_id, str) or "category" not in record:
            dropped["missing_field"] += 1
            continue
        if gmap_id in restaurants or gmap_id in others:
            dropped["duplicate"] += 1
            continue
        category = record["category"]
        if category is None:
            reason = "null_category"
        else:
            if isinstance(category, str):
                category = [category]
            if isinstance(category, list) and not categories.isdisjoint(
                c for c in category if isinstance(c, str)
            ):
                restaurants[gmap_id] = (_text_or_none(record.get("name")), _text_or_none(record.get("address")))
                index.kept += 1
                continue
            reason = "not_restaurant"
        others[gmap_id] = reason
        dropped[reason] += 1
    index.lines = lines_read
    return index


def merge_indexes(indexes: Iterable[BusinessIndex]) -> BusinessIndex:
    """The indexes of the metadata files, in file order, as one: a gmap_id listed by an earlier
    file makes the later line a duplicate, as if the files were one."""
    merged = BusinessIndex()
    for index in indexes:
        merged.lines += index.lines
        merged.kept += index.kept
        merged.dropped.update(index.dropped)
        for gmap_id, value in index.restaurants.items():
            if gmap_id in merged.restaurants or gmap_id in merged.others:
                merged.kept -= 1
                merged.dropped["duplicate"] += 1
            else:
                merged.restaurants[gmap_id] = value
        for gmap_id, reason in index.others.items():
            if gmap_id in merged.restaurants or gmap_id in merged.others:
                merged.dropped[reason] -= 1
                merged.dropped["duplicate"] += 1
            else:
                merged.others[gmap_id] = reason
    merged.dropped = +merged.dropped  # drop the reasons that went back to zero
    return merged


# -- pass 2: review lines -> candidates of restaurants ---------------------------------------------
def scan_reviews(
    lines: Iterable[bytes],
    *,
    first_order: int,
    restaurants: Mapping[bytes, T],
    others: Container[bytes],
    min_chars: int,
    max_chars: int,
    dropped: dict[str, int],
    accept: Callable[[T, object, str, tuple], object],
    progress: Callable[[], None] | None = None,
) -> None:
    """Parse and filter review lines; call `accept(restaurants[business], user_id, text, review)` for
    each line of a restaurant that passes, `review` being (time, line order, English text, original
    text or None, reviewer name or None), and `user_id, text` what tells duplicates apart. Every other
    line is counted in `dropped` under its reason, and `dropped["lines"]` gets the number of lines
    read. `progress` is called every 16,384 lines. (A call, not a generator: cheaper per line.)"""
    # locals, not globals or attributes, in the loop: it runs for every line
    decode, lookup, gmap_key, value_at = _decode_review_line, restaurants.get, _GMAP_KEY, _GMAP_VALUE_AT
    user_ids, numbers, unset, mark = _USER_ID, _NUMBER, UNSET, TRANSLATED_MARK
    progress = progress or _no_progress
    order = first_order - 1
    counts = dropped
    dropped = dict.fromkeys(REVIEW_DROP_REASONS, 0)  # a plain dict, filled: faster updates in the loop
    try:
        for line in lines:
            order += 1
            if not order & 0x3FFF:
                progress()
            if line.isspace() or not line:
                dropped["blank_line"] += 1
                continue
            # Fast path: read the gmap_id from the bytes (the key comes last in Google Local lines, so
            # search from the end). Lines of other businesses, most of a file, are then dropped without
            # being parsed. Inlined: this runs for every line.
            target = None
            at = line.rfind(gmap_key)
            if at >= 0:
                at += value_at
                end = line.find(b'"', at)
                if end > at:
                    business = line[at:end]
                    target = lookup(business)
                    if target is None and b"\\" not in business:
                        dropped["not_restaurant" if business in others else "unknown_business"] += 1
                        continue
            try:
                record = decode(line)
            except DECODE_ERRORS:
                dropped["malformed_json"] += 1
                continue
            if target is None:  # the bytes did not tell: ask the parsed record
                gmap_id = record.gmap_id
                if gmap_id.__class__ is not str:
                    dropped["missing_field"] += 1
                    continue
                business = gmap_id.encode()
                target = lookup(business)
                if target is None:
                    dropped["not_restaurant" if business in others else "unknown_business"] += 1
                    continue
            user_id, time, text = record.user_id, record.time, record.text
            if user_id.__class__ not in user_ids or text is unset or time.__class__ not in numbers:
                dropped["missing_field"] += 1
                continue
            if text is None:
                dropped["null_text"] += 1
                continue
            if text.__class__ is not str:
                dropped["missing_field"] += 1
                continue
            if mark in text:
                english, original = split_translation(text)
            else:
                english, original = text, None
            n = len(english)
            if n < min_chars:
                dropped["too_short"] += 1
                continue
            if n >= max_chars:
                dropped["too_long"] += 1
                continue
            name = record.name
            accept(target, user_id, text, (time, order, english, original, name if name.__class__ is str else None))
    finally:
        dropped["lines"] = order - first_order + 1
        for reason, n in dropped.items():
            if n:
                counts[reason] = counts.get(reason, 0) + n


class RecentReviews:
    """One restaurant's kept reviews, fed its candidates in line order: a candidate equal to an
    earlier one (same user, same text) is a duplicate; of the others, the `cap` most recent stay
    (ties in time: the later line). A plain list until it holds `cap` reviews, then a min-heap on
    (time, line order), oldest first out; the line order breaks ties, so texts are never compared.

    `seen` holds 64-bit hashes of (user, business, text), not the strings, so memory stays per
    review; restaurants may share one set (engine=local: one set, not one per restaurant). Hashes
    are per process: candidates of one restaurant must meet in one process, as they do in both engines.
    """

    __slots__ = ("business", "cap", "reviews", "seen", "duplicate", "over_cap")

    def __init__(self, business: str, cap: int | None, seen: set[int] | None = None):
        self.business = business
        self.cap = cap
        self.reviews: list[tuple] = []
        self.seen: set[int] = set() if seen is None else seen
        self.duplicate = 0
        self.over_cap = 0

    def add(self, user_id, text: str, review: tuple) -> None:
        key = hash((user_id, self.business, text))
        seen = self.seen
        if key in seen:
            self.duplicate += 1
            return
        seen.add(key)
        reviews, cap = self.reviews, self.cap
        n = len(reviews)
        if cap is None or n < cap:
            reviews.append(review)
            if n + 1 == cap:
                _heapify(reviews)
        elif review[0] < reviews[0][0]:  # older (TIME) than all it competes with: out at once
            self.over_cap += 1
        else:
            _heappushpop(reviews, review)  # the oldest of cap + 1 goes
            self.over_cap += 1

    def newest_first(self) -> list[tuple]:
        """The kept reviews, newest first (sorted in place: the heap is done with)."""
        self.reviews.sort(reverse=True)
        return self.reviews

    def tally(self) -> Tally:
        return Tally({("reviews", "dropped", "duplicate"): self.duplicate, ("reviews", "dropped", "over_cap"): self.over_cap})


# -- per batch of restaurants: group the kept reviews into rows --------------------------------------
#: a restaurant with its kept reviews, newest first
Restaurant = tuple[str, str | None, str | None, list[tuple]]  # gmap_id, name, address, reviews


def review_columns(
    reviews: list[tuple], language_id: LanguageIdentifier | None, progress: bool = False
) -> ReviewColumns:
    """The kept reviews as columns, with the language of each translated review's original text."""
    originals = [r[ORIGINAL] for r in reviews]
    languages: list[str | None] = [UNTRANSLATED_LANGUAGE if o is None else None for o in originals]
    confidences: list[float | None] = [None] * len(reviews)
    translated = [i for i, o in enumerate(originals) if o is not None]
    margins: list[float | None] = [None] * len(reviews)
    if language_id is not None and translated:
        codes, scores, gaps = language_id.identify([originals[i] for i in translated], progress=progress)
        for i, code, score, gap in zip(translated, codes, scores, gaps, strict=True):
            languages[i], confidences[i], margins[i] = code, score, gap
    return ReviewColumns(
        texts=[r[TEXT] for r in reviews],
        originals=originals,
        languages=languages,
        language_confidences=confidences,
        reviewers=[r[REVIEWER] for r in reviews],
        language_margins=margins,
        languages_identified=language_id is not None,
    )


def group_rows(
    restaurants: Iterable[Restaurant],
    grouping: Grouping,
    language_id: LanguageIdentifier | None,
    tally: Tally,
    progress: bool = False,
) -> Iterator[pa.Table]:
    """Label the reviews of these restaurants (language, grouping), split each restaurant's reviews
    into groups by label, drop the groups under `grouping.min_group_size`, and yield the rows as
    Arrow tables in `SCHEMA` (about `_WRITE_BATCH_REVIEWS` reviews each). Counts go to `tally`,
    the grouping's statistics and abstentions too (they are moved out of the grouping)."""
    restaurants = list(restaurants)
    reviews: list[tuple] = []
    spans: list[tuple[int, int]] = []
    for *_, kept in restaurants:
        spans.append((len(reviews), len(reviews) + len(kept)))
        reviews.extend(kept)
    columns = review_columns(reviews, language_id, progress)
    labels, confidences = grouping.assign(columns)
    tally.update({("grouping", name): n for name, n in grouping.stats.items()})
    tally.update({("grouping", "abstained", reason): n for reason, n in grouping.abstained.items()})
    grouping.stats.clear()
    grouping.abstained.clear()

    min_size = grouping.min_group_size
    batch = _RowBatch()
    for (gmap_id, name, address, _), (start, stop) in zip(restaurants, spans, strict=True):
        by_label: dict[str, list[int]] = {}
        for i in range(start, stop):
            by_label.setdefault(labels[i], []).append(i)
        rows_before = batch.n_rows
        for label in sorted(by_label):
            members = by_label[label]
            if len(members) < min_size:
                tally["reviews", "dropped", "group_too_small"] += len(members)
                tally["written", "groups_too_small"] += 1
                continue
            tally["reviews", "kept"] += len(members)
            tally["written", "rows_per_group", label] += 1
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
        tally["written", "businesses"] += batch.n_rows > rows_before
        if batch.n_reviews >= _WRITE_BATCH_REVIEWS:
            yield batch.table(columns)
            batch = _RowBatch()
    if batch.n_rows:
        yield batch.table(columns)


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
        self.categories = frozenset(categories)  # ranges: flavorfusion.config.source.GoogleLocalConf
        self.min_chars = int(min_chars)
        self.max_chars = int(max_chars)
        self.max_reviews = None if max_reviews_per_business is None else int(max_reviews_per_business)
        self.language_id = language_id

    def input_files(self) -> dict[str, list[str]]:
        return {"meta": expand_paths(self.meta), "reviews": expand_paths(self.reviews)}

    def write_groups(
        self,
        writer: ReviewGroupWriter,
        *,
        grouping: Grouping,
        translator: Translator,
        report: PrepareReport,
        progress: bool = True,
    ) -> None:
        refuse_translation(translator)
        files = self.input_files()
        report.add_input("meta", files["meta"])
        report.add_input("reviews", files["reviews"])
        tally = Tally()
        with gc_paused():
            for table in self._group_tables(files, grouping, tally, progress):
                writer.write(table)
        report.add_tally(tally, grouping=grouping.details())

    def _group_tables(self, files, grouping: Grouping, tally: Tally, progress: bool) -> Iterator[pa.Table]:
        categories = self.categories

        def meta_file(url: str) -> BusinessIndex:
            with open_lines(url, desc="meta", progress=progress) as file:
                return scan_meta(file.lines, categories)

        index = merge_indexes(meta_file(url) for url in files["meta"])
        tally.update(index.tally())
        seen: set[int] = set()
        kept, others = index.lookups(functools.partial(RecentReviews, cap=self.max_reviews, seen=seen))
        index.others.clear()

        dropped: dict[str, int] = {}
        for file_index, url in enumerate(files["reviews"]):
            with open_lines(url, desc="reviews", progress=progress) as file:
                scan_reviews(
                    file.lines,
                    first_order=line_order(file_index),
                    restaurants=kept,
                    others=others,
                    min_chars=self.min_chars,
                    max_chars=self.max_chars,
                    dropped=dropped,
                    accept=RecentReviews.add,
                    progress=file.progress,
                )
        del others
        seen.clear()  # duplicates are all found: free the hashes before the grouping needs the memory
        tally.update(input_tally("reviews", dropped.pop("lines", 0), 0, dropped))

        # businesses in metadata order, each one's reviews newest first
        restaurants: list[Restaurant] = []
        for gmap_id, (name, address) in index.restaurants.items():
            reviews = kept.pop(gmap_id.encode())
            tally.update(reviews.tally())
            if reviews.reviews:
                restaurants.append((gmap_id, name, address, reviews.newest_first()))
        del kept
        yield from group_rows(restaurants, grouping, self.language_id, tally, progress)


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
