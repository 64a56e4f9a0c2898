"""Runs many entry-point command lines in one fresh process (tests/test_config_bad_overrides.py): each as
`python -m flavorfusion.<stage> args...` would, with its exit status and stderr recorded, so that a table of bad
overrides costs one interpreter start instead of one per case. Reads a JSON list of [stage, args] on stdin, writes a
JSON list of [exit status, stderr, stdout] on stdout."""

import contextlib
import importlib
import io
import json
import logging
import sys


def run(stage: str, args: list[str]) -> tuple[int, str, str]:
    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        logger.handlers.clear()  # Hydra points its handlers at the stdout of the run that configured them
    main = importlib.import_module(f"flavorfusion.{stage}").main
    err, out = io.StringIO(), io.StringIO()
    sys.argv = [stage, *args]
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue(), out.getvalue()


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    results = [run(stage, args) for stage, args in cases]
    sys.__stdout__.write(json.dumps(results))
