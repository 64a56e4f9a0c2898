"""User-facing errors: one line that names the key, file or column, never a traceback."""

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class FlavorFusionError(Exception):
    """An error the user can fix (bad config value, missing file or column)."""


class ConfigError(FlavorFusionError):
    """A config key holds a value that cannot work; the message names the key."""


class DataError(FlavorFusionError):
    """Input data is missing or malformed; the message names the file or column."""


def exit_on_user_error(fn: F) -> F:
    """Turn a FlavorFusionError raised by an entry point into `error: <message>` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FlavorFusionError as err:
            # SystemExit passes through Hydra's exception reporting, which would print a traceback.
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
