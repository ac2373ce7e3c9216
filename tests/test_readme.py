"""The examples of the README and of the guides run, in both languages, so they cannot go stale.

The README is the front door; the Python site's pages (docs/python/) and the R
site's front page (r-wrapper/pkgdown/index.md) hold the rest of what it used
to. Every ```python and ```r block of these files runs in a fresh process. A
line ending in `#> text` states what that line prints: `text` must appear in
the block's output (whitespace-insensitive; R's `[1]` prefix aside).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs" / "python").rglob("*.md")),
             ROOT / "r-wrapper" / "pkgdown" / "index.md"]


def _blocks(language, documents=DOCUMENTS):
    """(id, code) of every block, the id naming the file and the block's number in it."""
    return [(f"{path.relative_to(ROOT)}:{number}", code) for path in documents
            for number, code in enumerate(
                re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S), 1)]


def _expected_lines(code):
    return [line.split("#> ", 1)[1].strip() for line in code.splitlines() if "  #> " in line]


def _squeeze(text):
    return " ".join(text.split())


def _check(code, result):
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _expected_lines(code)
    assert expected, "every example states what it prints"
    for text in expected:
        assert _squeeze(text) in _squeeze(result.stdout), (text, result.stdout)


PYTHON_BLOCKS = _blocks("python")
R_BLOCKS = _blocks("r")


def test_the_readme_and_the_guides_have_examples_in_both_languages():
    assert len(_blocks("python", [README])) >= 1 and len(_blocks("r", [README])) >= 1
    # What moved from the README into the guides (decoding, checkpoints, devices,
    # windows and gates, keras-hub) still runs here.
    assert len(PYTHON_BLOCKS) >= 7 and len(R_BLOCKS) >= 5


@pytest.mark.parametrize("code", [code for _, code in PYTHON_BLOCKS],
                         ids=[name for name, _ in PYTHON_BLOCKS])
def test_python_example_runs(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    _check(code, result)


@pytest.mark.parametrize("code", [code for _, code in R_BLOCKS],
                         ids=[name for name, _ in R_BLOCKS])
def test_r_example_runs(code):
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript is not on PATH: install R (bash scripts/setup.sh)")
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    result = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, env=env,
                            timeout=300)
    _check(code, result)
