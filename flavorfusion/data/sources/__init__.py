"""Raw review sources -> review groups. One class per source, built from `conf/source/<name>.yaml`.

Every source writes the one review-group record (`flavorfusion.data.record.SCHEMA`) through a
`flavorfusion.data.writer.ReviewGroupWriter`; `flavorfusion.data.jsonlines` streams their inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flavorfusion.data.grouping import Grouping
    from flavorfusion.data.report import PrepareReport
    from flavorfusion.data.translate import Translator
    from flavorfusion.data.writer import ReviewGroupWriter


class ReviewGroupSource(ABC):
    """Reads one raw data set and writes its review groups (`id`, `reviews`, `summary`, ...)."""

    #: the name used in the report and in `conf/source/<name>.yaml`
    name: str

    @abstractmethod
    def input_files(self) -> dict[str, list[str]]:
        """Concrete input files per input role; a missing file raises DataError before any work."""

    @abstractmethod
    def write_groups(
        self,
        writer: ReviewGroupWriter,
        *,
        grouping: Grouping,
        translator: Translator,
        report: PrepareReport,
        progress: bool = True,
    ) -> None:
        """Stream the input, write review groups as Arrow tables, and account every line in `report`."""
