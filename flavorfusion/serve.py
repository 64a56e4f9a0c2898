"""`python -m flavorfusion.serve`: serve exports over HTTP, each loaded once per process (docs/serving.md).

    python -m flavorfusion.serve model.name_or_path=outputs/.../model serve.port=8080
    python -m flavorfusion.serve model.name_or_path=DIR 'serve.variants={int8: DIR_INT8}' serve.summaries=s.parquet

The server is `flavorfusion.serving.server.run`.
"""

import hydra
from omegaconf import DictConfig

from flavorfusion.errors import exit_on_user_error
from flavorfusion.runs import CONFIG_DIR
from flavorfusion.serving.server import run


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
