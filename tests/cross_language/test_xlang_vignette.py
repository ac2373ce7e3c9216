"""The top-level cross-language guides render, and their equality checks hold.

A guide stops with an error if R and Python disagree (stopifnot), and prints
each comparison as "max |R - Python| (...) = <number>"; this test renders
them with vignettes/render.sh, in a separate R process, with this process's
Python and KERAS_BACKEND, and reads those lines back from the HTML.
"""

import html
import os
import re
import shutil
import subprocess
import sys

import keras
import pytest
from xlang import ATOL, REPO, record

EXPECTED_CHECKS = {
    "cross-language": ["outputs", "scores", ".keras saved in R, loaded in Python"],
    "beyond-keras": ["decoding", "conversion"],
}


@pytest.mark.parametrize("name", EXPECTED_CHECKS)
def test_cross_language_vignette_renders_with_equal_outputs(tmp_path, name):
    if shutil.which("Rscript") is None:
        message = "Rscript is not on PATH: install R (bash scripts/setup.sh)"
        if os.environ.get("PYGQA_REQUIRE_R") == "1":
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(REPO / "vignettes" / "render.sh"), str(tmp_path), name],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    page = tmp_path / f"{name}.html"
    assert result.stdout.strip().splitlines()[-1] == str(page)
    text = html.unescape(page.read_text())
    checks = re.findall(r"max \|R - Python\| \(([^)]*)\) = ([-+0-9.e]+)", text)
    assert [check for check, _ in checks] == EXPECTED_CHECKS[name]
    for check, value in checks:
        assert record(float(value), f"vignette {check}") <= ATOL, check
    if name == "beyond-keras" and keras.backend.backend() == "jax":
        # The multi-device chunk runs on JAX only (4 virtual CPU devices).
        sharded = re.findall(r"max \|sharded - one device\| = ([-+0-9.e]+)", text)
        assert len(sharded) == 1 and float(sharded[0]) <= 1e-5, sharded
