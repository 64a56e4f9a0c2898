"""The optional API key: read once at start from an environment variable (`serve.api_key_env` names it) or a
Secret Manager secret version (`serve.api_key_secret`), never from the command line or the config itself.
When set, the summarize and predict routes require it (`Authorization: Bearer KEY` or `X-API-Key: KEY`); the
page, health, metrics and the restaurant data stay open."""

from __future__ import annotations

import hmac
import os

from fastapi import Request

from flavorfusion.errors import ConfigError


def resolve_api_key(api_key_env: str | None, api_key_secret: str | None, environ=os.environ) -> str | None:
    """The configured key, or None when none is configured. A configured source that yields nothing is an error:
    the server must not start open by accident."""
    if api_key_env:
        key = environ.get(api_key_env, "").strip()
        if not key:
            raise ConfigError(f"serve.api_key_env={api_key_env}: the environment variable is not set or empty")
        return key
    if api_key_secret:
        try:
            from google.cloud import secretmanager
        except ImportError:
            raise ConfigError("serve.api_key_secret needs google-cloud-secret-manager: "
                              "pip install 'flavorfusion[vertex]'") from None
        try:
            client = secretmanager.SecretManagerServiceClient()
            key = client.access_secret_version(name=api_key_secret).payload.data.decode("utf-8").strip()
        except Exception as err:
            raise ConfigError(f"serve.api_key_secret={api_key_secret}: cannot read it ({type(err).__name__})") from None
        if not key:
            raise ConfigError(f"serve.api_key_secret={api_key_secret}: the secret is empty")
        return key
    return None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def key_matches(expected: str | None, presented: str | None) -> bool:
    if expected is None:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
