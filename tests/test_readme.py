"""The README's examples run, in both languages, so they cannot go stale."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_python_example_runs():
    (code,) = _blocks("python")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "(2, 10, 32) (2, 8, 10, 10)" in result.stdout


def test_r_example_runs():
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript is not on PATH: install R (bash scripts/setup.sh)")
    (code,) = _blocks("r")
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    result = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"\[1\]\s+2\s+10\s+32\n", result.stdout)
    assert re.search(r"\[1\]\s+2\s+8\s+10\s+10\n", result.stdout)
