"""The top-level cross-language guide renders, and its equality checks hold.

The guide stops with an error if R and Python disagree (stopifnot), and
prints each comparison as "max |R - Python| (...) = <number>"; this test
renders it with vignettes/render.sh, in a separate R process, with this
process's Python and KERAS_BACKEND, and reads those lines back from the HTML.
"""

import html
import os
import re
import shutil
import subprocess
import sys

import pytest
from xlang import ATOL, REPO, record


def test_cross_language_vignette_renders_with_equal_outputs(tmp_path):
    if shutil.which("Rscript") is None:
        message = "Rscript is not on PATH: install R (bash scripts/setup.sh)"
        if os.environ.get("PYGQA_REQUIRE_R") == "1":
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(REPO / "vignettes" / "render.sh"), str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    page = tmp_path / "cross-language.html"
    assert result.stdout.strip().splitlines()[-1] == str(page)
    text = html.unescape(page.read_text())
    checks = re.findall(r"max \|R - Python\| \(([^)]*)\) = ([-+0-9.e]+)", text)
    assert [name for name, _ in checks] == [
        "outputs", "scores", ".keras saved in R, loaded in Python"]
    for name, value in checks:
        assert record(float(value), f"vignette {name}") <= ATOL, name
