"""`python -m flavorfusion.evaluate`: score exported summarizers (fp, pruned, quantized) and extractive
baselines on one data split, and write one report (tables, plot, every example).

The entry point composes the config and reports user errors in one line; the stage is `flavorfusion.evaluation`.
"""

import hydra
from omegaconf import DictConfig

from flavorfusion.errors import exit_on_user_error
from flavorfusion.evaluation import run
from flavorfusion.runs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
