"""`python -m flavorfusion.summarize`: a summary for every review group of a table, batched and resumable.

    python -m flavorfusion.summarize model.name_or_path=outputs/.../model data.path=groups.parquet output=summaries.parquet

The entry point only composes the config and reports user errors in one line; the stage is
`flavorfusion.summarization.summarize`.
"""

from omegaconf import DictConfig

from flavorfusion.runs import hydra_entry_point
from flavorfusion.summarization import summarize


@hydra_entry_point("summarize")
def main(cfg: DictConfig) -> None:
    summarize(cfg)  # prints what it did


if __name__ == "__main__":
    main()
