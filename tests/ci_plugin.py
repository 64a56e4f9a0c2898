"""In CI (CI=true, as .ci/run runs), a missing dev dependency fails the run instead of turning its tests into
silent skips: the dev extras' modules are checked at session start, and a test or module skipped by
`pytest.importorskip` is reported as failed. Outside CI both stay skips, for partial installs."""

import importlib.util
import os

import pytest

# modules of the `dev` extras (pyproject.toml) that the tests need
DEV_MODULES = ("apache_beam", "dvc", "ethnicolr", "google.api_core", "google.cloud.aiplatform",
               "google.cloud.secretmanager", "google.cloud.translate", "gcsfs", "lingua", "msgspec", "torchao",
               "neural_compressor", "sklearn", "matplotlib", "fastapi", "uvicorn", "prometheus_client", "selenium")
IMPORT_SKIP = "could not import"  # how pytest.importorskip words its skip


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing_modules(names=DEV_MODULES) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def pytest_sessionstart(session):
    if in_ci():
        missing = missing_modules()
        if missing:
            raise pytest.UsageError(f"CI=true and dev dependencies are missing: {', '.join(missing)} "
                                    "(pip install -e '.[dev]')")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_import_skip(report) -> None:
    if in_ci() and report.skipped and IMPORT_SKIP in _skip_reason(report):
        report.outcome = "failed"
        report.longrepr = f"CI=true: a dev dependency is missing, not skipped: {_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skip(outcome.get_result())
