"""A tally: counts that add up across files, batches and workers, keyed by where they go in a stage's report. It is
what an engine returns (`flavorfusion.engines`); sources and workers of both stages add to it.

prepare:    (input, "lines") (input, "kept") (input, "dropped", reason)
            ("written", name) ("written", "rows_per_group", label) ("grouping", statistic)
            ("grouping", "abstained", reason)
summarize:  ("rows", "read") ("rows", "already_done") ("rows", "generated") ("rows", "failed")
            ("skipped", reason) ("time", "generate_ms") ("time", "contrast_ms")
"""

from collections import Counter

Tally = Counter
