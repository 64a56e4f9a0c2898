"""Serving summarizers over HTTP: `python -m flavorfusion.serve` (see docs/serving.md).

- `batcher`: a bounded asyncio queue per model variant that merges concurrent requests into one generate call
- `variants`: loading each model once per process and summarizing a batch of review lists with it
- `page`: the restaurant browser (`/app`) over a `summarize` output
- `app`: the FastAPI app: routes, limits, errors, metrics, health
"""
