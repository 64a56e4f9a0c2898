"""`python -m flavorfusion.train`: fine-tune a summarizer on review groups (Hydra + Lightning).

The entry point only composes the config and reports user errors in one line; the stage is
`flavorfusion.training.train`, which tests and other code call directly.
"""

from omegaconf import DictConfig

from flavorfusion.runs import hydra_entry_point
from flavorfusion.training import objective, train


@hydra_entry_point("train")
def main(cfg: DictConfig) -> float | list[float] | None:
    result = train(cfg)
    # what a Hydra sweeper optimizes: one float, or a list following the list `optimized_metric`
    return objective(result.metrics, cfg.optimized_metric)


if __name__ == "__main__":
    main()
