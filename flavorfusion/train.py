"""`python -m flavorfusion.train`: fine-tune a summarizer on review groups (Hydra + Lightning).

The entry point only composes the config and reports user errors in one line; the stage is
`flavorfusion.training.train`, which tests and other code call directly.
"""

import hydra
from omegaconf import DictConfig

from flavorfusion.errors import exit_on_user_error
from flavorfusion.runs import CONFIG_DIR
from flavorfusion.training import objective, train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | list[float] | None:
    result = train(cfg)
    # what a Hydra sweeper optimizes: one float, or a list following the list `optimized_metric`
    return objective(result.metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
