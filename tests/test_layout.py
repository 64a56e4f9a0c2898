"""The package's architecture holds: import-linter's contracts in pyproject.toml (entry points imported by
nobody, layers, no cycles) are kept, counting function-local imports too."""

import subprocess
import sys

from .conftest import ROOT


def test_import_contracts_are_kept():
    # `lint-imports`, run with this interpreter so that the venv's installed packages are the ones analysed
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    result = subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout

