"""Conversion parity: R's from_multi_head_attention / to_keras / from_keras equal Python's.

Both languages start from the same source weights (made here, float32, sent to
R as exact doubles) and convert in their own way: R with R doubles for the
head count and its own source layer. The converted weights must be equal bit
for bit; the outputs, from the same Keras code, within the bridge's ATOL.
"""

import pathlib

import keras
import numpy as np
import pytest
from xlang import ATOL, max_abs_diff, record

import pygqa

HERE = pathlib.Path(__file__).resolve().parent

# (id, source, heads, head_dim, use_bias, conversion, num_key_value_heads)
CASES = [
    ("mha8-to-8", "mha", (8,), 4, True, "from_multi_head_attention", 8),
    ("mha8-to-2", "mha", (8,), 4, True, "from_multi_head_attention", 2),
    ("mha6-to-3-nobias", "mha", (6,), 3, False, "from_multi_head_attention", 3),
    ("mha4-to-1", "mha", (4,), 5, True, "from_multi_head_attention", 1),
    ("gqa8x4-to-2", "gqa", (8, 4), 2, True, "from_multi_head_attention", 2),
    ("gqa4x2-to-4", "gqa", (4, 2), 3, False, "from_multi_head_attention", 4),
    ("gqa6x2-keras-round-trip", "gqa", (6, 2), 4, True, "keras_round_trip", None),
]
B, T, S, M, MV = 2, 7, 5, 12, 12


@pytest.fixture(scope="module")
def convert_in_r(r):
    r.ro.r["sys.source"](str(HERE / "bridge_conversion.R"), envir=r.env)
    return r.fn("convert_in_r")


def _source(kind, heads, head_dim, use_bias):
    if kind == "mha":
        return keras.layers.MultiHeadAttention(heads[0], head_dim, use_bias=use_bias)
    return pygqa.GroupQueryAttention(head_dim, heads[0], heads[1], use_bias=use_bias)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_r_conversion_equals_python(convert_in_r, case):
    name, kind, heads, head_dim, use_bias, conversion, kv = case
    rng = np.random.default_rng(len(name))
    q = rng.uniform(-1, 1, size=(B, T, M)).astype(np.float32)
    v = rng.uniform(-1, 1, size=(B, S, MV)).astype(np.float32)
    layer = _source(kind, heads, head_dim, use_bias)
    layer(q, v)
    weights = [rng.normal(scale=0.3, size=w.shape).astype(np.float32)
               for w in layer.get_weights()]
    layer.set_weights(weights)
    if conversion == "keras_round_trip":
        ours = pygqa.from_keras(pygqa.to_keras(layer))
    else:
        ours = pygqa.from_multi_head_attention(layer, kv)
    expected_output = keras.ops.convert_to_numpy(ours(q, v))

    got = convert_in_r(kind, conversion, [float(h) for h in heads], float(head_dim), use_bias,
                       weights, q.astype(np.float64), v.astype(np.float64),
                       num_key_value_heads=None if kv is None else float(kv))
    assert got["class"] == "pygqa_layer"
    r_weights = got["weights"]
    assert len(r_weights) == len(ours.get_weights()) == (8 if use_bias else 4)
    for r_w, py_w in zip(r_weights, ours.get_weights()):
        assert r_w.shape == py_w.shape
        np.testing.assert_array_equal(r_w.astype(np.float32), py_w)
    diff = record(max_abs_diff(got["output"], expected_output), f"conversion {name} output")
    assert diff <= ATOL


LAYOUTS = {
    "2x2-default": ((2, 2), ("batch", "model"), {}),
    "1x4-kv-replicated": ((1, 4), ("batch", "model"),
                          {"num_query_heads": 8, "num_key_value_heads": 2}),
    "4-named-layer": ((4,), ("heads",), {"model_axis": "heads", "layer_name": "enc/gqa"}),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_r_layout_map_equals_python(r, convert_in_r, layout):
    shape, names, args = LAYOUTS[layout]
    mesh = keras.distribution.DeviceMesh(shape, list(names),
                                         [f"cpu:{i}" for i in range(int(np.prod(shape)))])
    python = pygqa.layout_map(mesh, **args)
    got = r.fn("layout_in_r")(np.array(shape, dtype=np.float64), np.array(names), args)
    assert list(got["keys"]) == list(python)
    for key, axes in zip(got["keys"], got["axes"]):
        r_axes = tuple(None if a is None or a != a else str(a) for a in np.atleast_1d(axes))
        assert r_axes == python[key].axes, key
