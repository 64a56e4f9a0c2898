"""`python -m flavorfusion.prepare`: raw review data -> review groups (Parquet or the original code's CSV) and a report.

    python -m flavorfusion.prepare source=google_local source.reviews=PATH source.meta=PATH output=PATH
    python -m flavorfusion.prepare source=lsars source.path=PATH output=PATH translate=google

The entry point only composes the config and reports user errors in one line; the stage is
`flavorfusion.preparation.prepare`.
"""

from omegaconf import DictConfig

from flavorfusion.preparation import prepare
from flavorfusion.runs import hydra_entry_point


@hydra_entry_point("prepare")
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
