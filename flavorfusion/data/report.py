"""The prepare report: every input line is either kept or dropped for exactly one reason."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flavorfusion.tally import Tally


@dataclass
class InputCount:
    """Lines read from one input (all its files together) and what became of each of them."""

    files: list[str]
    lines: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    @property
    def accounted(self) -> bool:
        return self.lines == self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass
class PrepareReport:
    """What `prepare` read, kept, dropped and wrote; saved as JSON beside the output."""

    source: str
    output: str | None = None
    format: str | None = None
    inputs: dict[str, InputCount] = field(default_factory=dict)
    # rows written, reviews in them, rows per group label, ...
    written: dict[str, Any] = field(default_factory=dict)
    # free-form details from the grouping and the translator (abstentions, cache hits, cost)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def add_input(self, name: str, files: list[str]) -> InputCount:
        self.inputs[name] = InputCount(files=files)
        return self.inputs[name]

    def add_tally(self, tally: Mapping[tuple, int], grouping: Mapping[str, Any] | None = None) -> None:
        """Add a tally (see `Tally`) to the counts; `grouping` is the grouping's own details, to which
        its statistics are added. Every engine reports through here, so equal tallies mean equal reports."""
        rows_per_group: Counter = Counter(self.written.pop("rows_per_group", {}))
        stats: Counter = Counter()
        abstained: Counter = Counter()
        if grouping is not None:  # said even when nothing was written
            for name in ("rows", "reviews", "businesses", "groups_too_small"):
                self.written.setdefault(name, 0)
        for key, n in tally.items():
            if not n:
                continue
            section, name, *rest = key
            if section in self.inputs:
                count = self.inputs[section]
                if name == "lines":
                    count.lines += n
                elif name == "kept":
                    count.kept += n
                else:
                    count.drop(rest[0], n)
            elif section == "written" and name == "rows_per_group":
                rows_per_group[rest[0]] += n
            elif section == "written":
                self.written[name] = self.written.get(name, 0) + n
            elif section == "grouping" and name == "abstained":
                abstained[rest[0]] += n
            elif section == "grouping":
                stats[name] += n
            else:
                raise KeyError(f"tally key {key!r} has no place in the report")
        # most rows first; ties by label, so the order does not depend on the order of the work
        self.written["rows_per_group"] = dict(sorted(rows_per_group.items(), key=lambda kv: (-kv[1], kv[0])))
        if grouping is not None:  # abstentions: reviews labelled `unknown`, in total and by reason
            self.details["grouping"] = {
                **grouping,
                **dict(sorted(stats.items())),
                "abstained": sum(abstained.values()),
                "abstained_by_reason": dict(sorted(abstained.items(), key=lambda kv: (-kv[1], kv[0]))),
            }

    def check(self) -> None:
        """Fail loudly if any input line went unaccounted (a bug, not a user error)."""
        for name, count in self.inputs.items():
            if not count.accounted:
                raise AssertionError(
                    f"report does not add up for {name}: {count.lines} lines != "
                    f"{count.kept} kept + {sum(count.dropped.values())} dropped {dict(count.dropped)}"
                )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": self.output,
            "format": self.format,
            "inputs": {name: count.as_dict() for name, count in self.inputs.items()},
            "written": self.written,
            **self.details,
            "seconds": self.seconds,
        }

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    def table(self) -> str:
        """A short console summary: one line per input, then what was written."""
        rows = [("input", "lines", "kept", "dropped")]
        for name, count in self.inputs.items():
            reasons = " ".join(f"{r}={n}" for r, n in count.dropped.most_common()) or "-"
            rows.append((name, f"{count.lines:,}", f"{count.kept:,}", reasons))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]])
            for row in rows
        ]
        if self.written:
            groups = self.written.get("rows_per_group")
            summary = (
                f"wrote {self.written.get('rows', 0):,} rows, {self.written.get('reviews', 0):,} reviews"
            )
            if groups:
                summary += " (rows per group: " + " ".join(f"{g}={n}" for g, n in groups.items()) + ")"
            lines.append(f"{summary} -> {self.output}")
        grouping = self.details.get("grouping")
        if grouping and grouping.get("abstained"):
            reasons = " ".join(f"{r}={n}" for r, n in grouping["abstained_by_reason"].items())
            lines.append(f"grouping={grouping['name']} abstained on {grouping['abstained']:,} reviews (unknown): {reasons}")
        return "\n".join(lines)


def input_tally(name: str, lines: int, kept: int, dropped: Mapping[str, int]) -> Tally:
    """The tally of one input's lines: how many, how many kept, and why the others were dropped."""
    tally = Tally({(name, "lines"): lines, (name, "kept"): kept})
    tally.update({(name, "dropped", reason): n for reason, n in dropped.items() if n})
    return tally


def report_path(output: str) -> str:
    """`groups.parquet` -> `groups.report.json`, beside the output."""
    root, _ = os.path.splitext(output)
    return f"{root}.report.json"
