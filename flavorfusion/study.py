"""`python -m flavorfusion.study DIR`: one report for a sweep (finished or running), written beside it.

The stage is `flavorfusion.studies.report`; this entry point only reads the command line and reports user
errors in one line.
"""

import argparse
import logging

from flavorfusion.errors import exit_on_user_error
from flavorfusion.studies import report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flavorfusion.study",
        description="Report a sweep: study.csv/.md, study_pareto.png, effect and importance plots, best.yaml.")
    parser.add_argument("sweep_dir", metavar="DIR", help="a multirun directory (local, or a Vertex sweep's)")
    parser.add_argument("--pick", type=int, default=None, metavar="N",
                        help="the run best.yaml reproduces (default: best ROUGE-L on the Pareto front)")
    parser.add_argument("--max-size-mb", type=float, default=None, metavar="MB",
                        help="choose the best ROUGE-L among front runs no larger than MB")
    parser.add_argument("--wandb", choices=("auto", "on", "off"), default="auto",
                        help="log the table and plots to the sweep's W&B group (auto: if its runs used logger=wandb)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, str]:
    logging.basicConfig(level=logging.INFO, format="[%(name)s][%(levelname)s] %(message)s")
    args = parse_args(argv)
    written = report(args.sweep_dir, pick=args.pick, max_size_mb=args.max_size_mb, wandb=args.wandb)
    for path in written.values():
        print(path)
    return written


if __name__ == "__main__":
    main()
