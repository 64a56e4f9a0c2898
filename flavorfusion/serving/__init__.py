"""Serving summarizers over HTTP: `python -m flavorfusion.serve` (see docs/serving.md).

- `server`: `run(cfg)`: the variants, the API key, uvicorn with the connection limits of conf/serve.yaml
- `app`: `create_app`: the registry on `app.state`, the middleware, one error shape, the routes
- `routes`: the `APIRouter` (request and answer bodies: `schemas`)
- `state`: settings, metrics, the variants' registry, `ApiError`
- `limits`: body, header and keep-alive limits, security headers, every response counted in /metrics
- `security`: the optional API key (an environment variable or Secret Manager)
- `batcher`: a bounded asyncio queue per model variant that merges concurrent requests into one generate call
- `variants`: loading each model once per process; encoding one request, generating a batch
- `page`, `names`: the restaurant browser (`/app`) over a `summarize` output, with readable group names
"""
