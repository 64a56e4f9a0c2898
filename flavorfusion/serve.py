"""`python -m flavorfusion.serve`: serve exports over HTTP, each loaded once per process (docs/serving.md).

    python -m flavorfusion.serve model.name_or_path=outputs/.../model serve.port=8080
    python -m flavorfusion.serve model.name_or_path=DIR +serve.variants.int8=DIR_INT8 serve.summaries=s.parquet

The server is `flavorfusion.serving.server.serve`.
"""

from omegaconf import DictConfig

from flavorfusion.runs import hydra_entry_point
from flavorfusion.serving.server import serve


@hydra_entry_point("serve")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
