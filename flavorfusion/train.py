"""`python -m flavorfusion.train`: fine-tune a summarizer on review groups (Hydra + Lightning).

The entry point only composes the config and reports user errors in one line; the stage is
`flavorfusion.training.train`, which tests and other code call directly.
"""

from omegaconf import DictConfig

from flavorfusion.runs import hydra_entry_point
from flavorfusion.training import train


@hydra_entry_point("train")
def main(cfg: DictConfig) -> float | list[float | None] | None:
    result = train(cfg)
    # what a Hydra sweeper optimizes: one metric, or one value per objective
    metric = cfg.optimized_metric
    return result.metrics.get(metric) if isinstance(metric, str) else [result.metrics.get(m) for m in metric]


if __name__ == "__main__":
    main()
