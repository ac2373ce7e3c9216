"""The README's examples run, in both languages, so they cannot go stale.

Every ```python and ```r block runs in a fresh process. A line ending in
`#> text` states what that line prints: `text` must appear in the block's
output (whitespace-insensitive; R's `[1]` prefix aside).
"""

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


def _expected_lines(code):
    return [line.split("#> ", 1)[1].strip() for line in code.splitlines() if "  #> " in line]


def _squeeze(text):
    return " ".join(text.split())


def _check(code, result):
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _expected_lines(code)
    assert expected, "every README example states what it prints"
    for text in expected:
        assert _squeeze(text) in _squeeze(result.stdout), (text, result.stdout)


PYTHON_BLOCKS = _blocks("python")
R_BLOCKS = _blocks("r")


def test_the_readme_has_examples_in_both_languages():
    assert len(PYTHON_BLOCKS) >= 4 and len(R_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_example_runs(index):
    code = PYTHON_BLOCKS[index]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    _check(code, result)


@pytest.mark.parametrize("index", range(len(R_BLOCKS)))
def test_r_example_runs(index):
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript is not on PATH: install R (bash scripts/setup.sh)")
    code = R_BLOCKS[index]
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    result = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, env=env,
                            timeout=300)
    _check(code, result)
