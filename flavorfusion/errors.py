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


def find_user_error(err: BaseException | None) -> FlavorFusionError | None:
    """The FlavorFusionError behind `err`, also when a library wrapped it (Hydra's instantiate does)."""
    while err is not None:
        if isinstance(err, FlavorFusionError):
            return err
        err = err.__cause__ or err.__context__
    return None


def exit_on_user_error(fn: F) -> F:
    """Turn a FlavorFusionError raised by an entry point into `error: <message>` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None:
                raise
            # SystemExit passes through Hydra's exception reporting, which would print a traceback.
            print(f"error: {user_error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
