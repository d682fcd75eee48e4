"""The whole tree passes the linters configured in pyproject.toml (issue 12).

``ruff check .`` (pycodestyle, pyflakes, import order, docstring rules; ``[tool.ruff]``) and
``snakefmt --check Snakefile workflow/rules`` (``[tool.snakefmt]``), run from the repository root
with the executables of the interpreter running the tests (both are in the ``test`` extra).
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(name, *args):
    """(exit code, stdout + stderr) of the venv's ``name`` run with ``args`` in the repository root."""
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{exe} not found: install the test extra (pip install -e '.[test]')")
    proc = subprocess.run([str(exe), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_ruff_finds_no_problem_in_the_tree():
    code, out = run_tool("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert code == 0, f"ruff check . failed (fix with `ruff check --fix .`, then by hand):\n{out}"


def test_snakefmt_leaves_the_workflow_unchanged():
    code, out = run_tool("snakefmt", "--check", "--diff", "Snakefile", "workflow/rules")
    assert code == 0, f"snakefmt --check failed (format with `snakefmt Snakefile workflow/rules`):\n{out}"
