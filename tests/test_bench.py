"""The decode benchmark's harness: the steps it times are real decode steps."""

import json

import numpy as np
from helpers import to_numpy

import pygqa
from pygqa.bench import decode


def test_decode_step_returns_one_finite_position_per_sequence():
    layer = pygqa.GroupQueryAttention(decode.HEAD_DIM, 8, 2, seed=3)
    step = decode.decode_step(layer, batch=2, length=8)
    output = to_numpy(step.run())
    assert output.shape == (2, 1, decode.D_MODEL)
    assert np.isfinite(output).all()


def test_run_decode_reports_both_layouts(tmp_path):
    rows = decode.run_decode(lengths=(16,), batch=1, rounds=1, out=str(tmp_path))
    (row,) = rows
    assert row["cache_ratio"] == 4.0  # 8 vs 2 key/value heads
    assert row["gqa_cache_mib"] * 2**20 == 2 * 1 * 16 * 2 * decode.HEAD_DIM * 4
    assert row["gqa_ms"] > 0 and row["mha_ms"] > 0 and row["time_ratio"] > 0
    saved = json.loads((tmp_path / "decode.json").read_text())
    assert saved["rows"] == rows
    assert "| 16 |" in (tmp_path / "decode.md").read_text()


def test_cache_bytes_formula_matches_a_real_cache():
    layer = pygqa.GroupQueryAttention(decode.HEAD_DIM, 8, 2)
    cache = layer.empty_cache(3, 40)
    assert to_numpy(cache).nbytes == decode.cache_bytes(3, 40, 2)
