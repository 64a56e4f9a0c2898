"""`python -m flavorfusion.evaluate`: score exported summarizers (fp, pruned, quantized) and extractive
baselines on one data split, and write one report (tables, plot, every example).

The entry point composes the config and reports user errors in one line; the stage is `flavorfusion.evaluation`.
"""

from omegaconf import DictConfig

from flavorfusion.evaluation import evaluate
from flavorfusion.runs import hydra_entry_point


@hydra_entry_point("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
