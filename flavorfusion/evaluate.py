"""`python -m flavorfusion.evaluate`: score exported summarizers (fp, pruned, quantized) and extractive
baselines on one data split, and write one report (tables, plot, every example)."""

import logging

import hydra
from omegaconf import DictConfig

from flavorfusion.errors import exit_on_user_error

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    from flavorfusion.evaluation import evaluate, log_to_loggers, write_report
    from flavorfusion.train import instantiate_nodes

    results, examples = evaluate(cfg)
    paths = write_report(results, examples, cfg.output_dir, cfg.latency.new_tokens)
    loggers = instantiate_nodes(cfg.logger)
    log_to_loggers(loggers, results)
    with open(paths["report.md"]) as f:
        print(f.read())
    log.info("report written to %s", cfg.output_dir)
    return {"results": results, "paths": paths, "loggers": loggers}


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
