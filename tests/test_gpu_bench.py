"""benchmarks/gpu.sh: its CPU dry run writes the table, and its arithmetic.

The dry run runs in a fresh process, exactly as a person would start it, for
this process's backend where gpu.sh covers it (jax, torch), else for torch
(the quicker of the two).
"""

import json
import os
import pathlib
import subprocess
import sys

import keras

from benchmarks import gpu

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
BACKEND = keras.backend.backend()
DRY_RUN_BACKEND = BACKEND if BACKEND in ("jax", "torch") else "torch"


def _run(*args):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("KERAS_BACKEND", None)  # gpu.sh sets it per backend
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=240)


def test_cpu_dry_run_writes_the_table(tmp_path):
    result = _run("--cpu", "--backends", DRY_RUN_BACKEND, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / f"{DRY_RUN_BACKEND}.json").read_text())["rows"]
    expected = len(gpu.cases(gpu.TINY)) * len(gpu.MODES) * len(gpu.IMPLS)
    assert len(rows) == expected
    assert all(row["status"] == "ok" and row["ms"] > 0 for row in rows), rows
    for row in rows:
        key = "attention_tflops" if row["impl"] == "kernel" else "layer_tflops"
        assert row[key] > 0
        if row["impl"] == "pygqa":  # bfloat16 outputs agree with Keras's layer
            assert row["diff_vs_keras"] < gpu.PARITY_TOLERANCE
    table = (tmp_path / "gpu.md").read_text()
    assert f"## {DRY_RUN_BACKEND}" in table and "CPU dry run" in table
    lines = [line for line in table.splitlines() if line.startswith("| 2 x 64")]
    assert len(lines) == expected
    assert sum("| padded" in line or "padded |" in line for line in lines) == 8
    assert "✗" not in table and "failed" not in table
    assert "keras / pygqa time, >= 1.2x at every case: 2 x 64 " in table


def test_unknown_backend_is_refused_by_name(tmp_path):
    result = _run("--cpu", "--backends", "jax,tensorflow", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "`--backends`" in result.stderr and "Received: jax,tensorflow" in result.stderr
    assert not list(tmp_path.iterdir())  # refused before running anything


def test_flops_are_counted_as_flashattention_counts_them():
    u, h = 32, 128
    full = gpu.attention_flops(1, 16384, False, False, u, h, "fwd")
    assert full == 4 * u * h * 16384**2
    assert gpu.attention_flops(1, 16384, True, False, u, h, "fwd") == full / 2
    assert gpu.attention_flops(1, 16384, True, False, u, h, "fwdbwd") == 3.5 * full / 2
    # Padding: only kept keys count (lengths T, 3T/4, T/2, T/4).
    assert gpu.kept_lengths(4, 4096) == [4096, 3072, 2048, 1024]
    padded = gpu.attention_flops(4, 4096, False, True, u, h, "fwd")
    assert padded == 4 * u * h * 4096 * (4096 + 3072 + 2048 + 1024)
    projections = 2 * 4 * 4096 * 4096 * (2 * 32 + 2 * 8) * 128
    layer = gpu.layer_flops(4, 4096, False, False, gpu.FULL, "fwdbwd")
    assert layer == 3 * projections + 3.5 * gpu.attention_flops(4, 4096, False, False, u, h,
                                                                "fwd")


def test_report_ratios_and_targets():
    def row(impl, mode, ms):
        out = dict(batch=1, length=16384, causal=True, padded=False, mode=mode, impl=impl,
                   ms=ms, status="ok", peak_bytes=2**30)
        out["attention_tflops" if impl == "kernel" else "layer_tflops"] = 400.0
        return out

    rows = [row("pygqa", "fwdbwd", 10.0), row("keras", "fwdbwd", 15.0),
            row("raw", "fwdbwd", 9.5), row("kernel", "fwdbwd", 6.0)]
    meta = dict(device="H200", on_gpu=True, backend_version="0", keras="3", pygqa="0",
                python="3", date="d", config=dict(d_model=4096, head_dim=128, heads=32,
                                                 kv_heads=8))
    table = gpu.markdown({"jax": {"meta": meta, "rows": rows}})
    assert "| 1 x 16384 causal | fwd+bwd | pygqa | 10.00 | 1.50x | 400 | – | 1024 |" in table
    assert "1 x 16384 causal 1.50x" in table and "1 x 16384 causal 1.05" in table
    assert "causal, >= 350: 400" in table
