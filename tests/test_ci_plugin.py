"""CI=true turns a skip for a missing dev dependency into a failure; elsewhere it stays a skip."""

import os
import subprocess
import sys

import pytest

from .ci_plugin import missing_modules
from .conftest import ROOT

SAMPLE = '''
import pytest

def test_needs_a_missing_package():
    pytest.importorskip("no_such_package_for_flavorfusion")

def test_plain():
    assert True
'''
MODULE_LEVEL = 'import pytest\npytest.importorskip("no_such_package_for_flavorfusion")\n\ndef test_x():\n    pass\n'


def run_pytest(path, ci: bool):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true" if ci else "false"}
    # the plugin without the session check (this machine may lack a dev extra; that check is tested below)
    code = "import sys, pytest, tests.ci_plugin as p; p.DEV_MODULES = (); sys.exit(pytest.main(sys.argv[1:], plugins=[p]))"
    return subprocess.run([sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", "-rA", str(path)],
                          cwd=path.parent, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "local"])
def test_missing_dev_dependency_fails_in_ci_and_skips_elsewhere(tmp_path, ci):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    in_test = run_pytest(tmp_path / "test_sample.py", ci)
    at_import = run_pytest(tmp_path / "test_module_level.py", ci)
    if ci:
        assert in_test.returncode == 1 and "1 failed, 1 passed" in in_test.stdout, in_test.stdout[-2000:]
        assert at_import.returncode == 2 and "1 error" in at_import.stdout, at_import.stdout[-2000:]
        for result in (in_test, at_import):
            assert "CI=true: a dev dependency is missing, not skipped" in result.stdout
    else:
        assert in_test.returncode == 0 and "1 passed, 1 skipped" in in_test.stdout, in_test.stdout[-2000:]
        assert at_import.returncode in (0, 5) and "1 skipped" in at_import.stdout, at_import.stdout[-2000:]  # 5: none ran


def test_missing_modules_are_named():
    assert missing_modules(("json", "no_such_package_for_flavorfusion", "no_such_parent.child")) == [
        "no_such_package_for_flavorfusion", "no_such_parent.child"]
