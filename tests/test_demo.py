"""The main job (`python -m pygqa.demo`) runs on this backend: its output and its exit status.

Shortened to two epochs (the default is 60) so that it costs seconds per backend;
the R run is a real Rscript child process, as in `bash scripts/run.sh demo`.
"""

import os
import shutil
import subprocess
import sys

import keras
import pytest


def run_demo(tmp_path, *extra):
    if shutil.which("Rscript") is None:
        message = "the demo needs Rscript and the R package pygqa (bash scripts/setup.sh)"
        if os.environ.get("PYGQA_REQUIRE_R") == "1":
            pytest.fail(f"PYGQA_REQUIRE_R=1 but {message}")
        pytest.skip(message)
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    plot = tmp_path / "losses.png"
    result = subprocess.run(
        [sys.executable, "-m", "pygqa.demo", "--epochs", "2", "--plot", str(plot), *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )
    return result, plot


def test_demo_trains_the_same_model_in_r_and_python(tmp_path):
    result, plot = run_demo(tmp_path)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert f"backend {keras.backend.backend()}" in out
    assert "Python [########################]   16/16" in out  # the progress bars finished
    assert "R [########################]   16/16" in out
    assert "[FAILED]" not in out and out.count("[ok]") == 5
    # Bit for bit on every backend (torch in R with its own BLAS, see pygqa/demo.py).
    assert "losses at all 16 steps: largest difference 0 (exactly equal)" in out
    assert "largest difference 0 (exactly equal)" in out.split("final weights")[1].split("\n")[0]
    assert "names generated with the key/value cache: the same text" in out
    assert "2 x (1, 2, 20, 2, 8) = 5.0 KiB" in out and "(4x larger)" in out
    assert out.rstrip().endswith("R and Python agree.")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


# The comparison is the demo's own code, the same on every backend: it is
# checked once, on the default backend (it costs a demo run), and not defined
# (rather than skipped) on the others.
if keras.backend.backend() == "tensorflow":

    def test_demo_exits_non_zero_when_r_and_python_disagree(tmp_path):
        result, _ = run_demo(tmp_path, "--r-seed", "2024")  # R trains from another seed
        assert result.returncode == 1, result.stdout[-3000:]
        assert "[FAILED] losses at all 16 steps" in result.stdout
        assert "[FAILED] final weights" in result.stdout
        assert "[ok] the same data" in result.stdout  # only the seed differed
        assert "R and Python disagree" in result.stderr


def test_the_r_demo_script_has_the_python_demos_settings():
    """`demo("place-names", package = "pygqa")` in R runs without Python's config.json, on
    the defaults written in the script: they must be the Python demo's."""
    import pathlib
    import re

    from pygqa import demo

    script = pathlib.Path(__file__).parent.parent / "r-wrapper" / "demo" / "place-names.R"
    block = re.search(r"defaults <- list\((.*?)\n\)", script.read_text(), re.S).group(1)
    def value(text):  # R's 2L, 0.1, 3e-3, "abc"
        if text.startswith('"'):
            return text.strip('"')
        return int(text[:-1]) if text.endswith("L") else float(text)

    found = {name: value(text) for name, text
             in re.findall(r"(\w+) = (\"[^\"]*\"|[0-9.e-]+L?)", block)}
    assert found == {
        "seed": demo.SEED, "width": demo.WIDTH, "head_dim": demo.HEAD_DIM,
        "query_heads": demo.QUERY_HEADS, "kv_heads": demo.KV_HEADS, "blocks": demo.BLOCKS,
        "dropout": demo.DROPOUT, "epochs": demo.EPOCHS, "batch_size": demo.BATCH_SIZE,
        "learning_rate": demo.LEARNING_RATE, "prompts": demo.PROMPTS,
    }
