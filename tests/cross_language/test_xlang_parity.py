"""Output parity: the same layer built in R and in Python gives the same numbers.

Each layout is built once per language (R with R-native arguments: doubles,
R arrays, R logical masks) and called with every call variant; one R round
trip serves all the variants of a layout. Weights travel both ways: half the
layouts get Python-made weights read in R, the other half R-made weights
(R's rnorm) read in Python.
"""

import dataclasses
import functools

import keras
import numpy as np
import pytest
from helpers import random_masks
from xlang import ATOL, max_abs_diff, record

import pygqa


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    heads: tuple  # (num_query_heads, num_key_value_heads)
    head_dim: int
    use_bias: bool
    batch: int
    target: int
    source: int | None  # None: self-attention (value = NULL / None)
    query_dim: int
    value_dim: int | None = None
    key_dim: int | None = None  # None: key = value
    weights_from: str = "python"  # who makes the weights: "python" or "r"
    options: tuple = ()  # further constructor options, ((name, value), ...)

    @property
    def id(self):
        u, v = self.heads
        kind = "mha" if u == v else "mqa" if v == 1 else "gqa"
        source = "self" if self.source is None else f"S{self.source}"
        options = "".join(f"-{name}{value}" for name, value in self.options)
        return (f"{kind}{u}x{v}-h{self.head_dim}-{'bias' if self.use_bias else 'nobias'}"
                f"-b{self.batch}-T{self.target}{source}{options}-{self.weights_from}_weights")

    @property
    def weight_count(self):
        per_projection = 2 if self.use_bias else 1
        return per_projection * (5 if dict(self.options).get("use_gate") else 4)


# Small shapes (jax runs eagerly here, one compile per new shape); odd lengths,
# T != S, head_dim from 1 to 64, query/value/key feature dims that differ.
LAYOUTS = [
    Layout("a", (4, 4), 8, True, 2, 7, 5, 16, 16),
    Layout("b", (4, 4), 1, False, 1, 9, 4, 6, 10, weights_from="r"),
    Layout("c", (8, 2), 64, True, 2, 3, 11, 24, 8, 12),
    Layout("d", (8, 2), 16, False, 1, 13, 7, 32, 32, weights_from="r"),
    Layout("e", (4, 1), 4, True, 3, 5, 9, 12, 20, 20, weights_from="r"),
    Layout("f", (4, 1), 2, False, 1, 1, 3, 8, 4),
    Layout("g", (8, 2), 5, True, 2, 11, None, 10, weights_from="r"),
    Layout("h", (3, 3), 3, False, 1, 6, None, 9),
    Layout("i", (6, 3), 7, True, 2, 7, 13, 14, 9),
    Layout("j", (8, 1), 32, True, 1, 17, 1, 16, 6, weights_from="r"),
    Layout("k", (12, 4), 1, False, 2, 4, 6, 5, 7, 3, weights_from="r"),
    Layout("l", (2, 2), 64, True, 2, 8, 3, 64, 16),
    # Keras 3.15's options, through `...` in R: gate, sliding window, both.
    Layout("m", (8, 2), 8, True, 2, 9, 7, 16, 16, weights_from="r",
           options=(("sliding_window", 3), ("use_gate", True))),
    Layout("n", (4, 2), 4, False, 1, 11, None, 8, options=(("sliding_window", 2),)),
    Layout("o", (4, 1), 4, True, 2, 6, 8, 12, 10, options=(("use_gate", True),)),
]

# Call variants: name -> (call arguments, which masks to pass).
VARIANTS = {
    "plain": ({}, ()),
    "scores": ({"return_attention_scores": True}, ()),
    "causal": ({"use_causal_mask": True}, ()),
    "causal-scores": ({"use_causal_mask": True, "return_attention_scores": True}, ()),
    "query_mask": ({}, ("query_mask",)),
    "value_mask": ({"return_attention_scores": True}, ("value_mask",)),
    "key_mask": ({}, ("key_mask",)),
    "attention_mask": ({"return_attention_scores": True}, ("attention_mask",)),
    "all-masks-causal": ({"use_causal_mask": True, "return_attention_scores": True},
                         ("query_mask", "value_mask", "key_mask", "attention_mask")),
}

CASES = [(layout, variant) for layout in LAYOUTS for variant in VARIANTS]


def _unit(rng, *shape):
    """Unit-scale float32 values (as float64, so R receives them exactly)."""
    return rng.uniform(-1, 1, size=shape).astype(np.float32).astype(np.float64)


def _inputs(layout, seed):
    rng = np.random.default_rng(seed)
    b, t = layout.batch, layout.target
    q = _unit(rng, b, t, layout.query_dim)
    if layout.source is None:
        return rng, q, None, None, t
    s = layout.source
    v = _unit(rng, b, s, layout.value_dim)
    k = None if layout.key_dim is None else _unit(rng, b, s, layout.key_dim)
    return rng, q, v, k, s


@functools.cache
def _run_layout(r, layout):
    """Runs every variant of `layout` in R (one round trip) and in Python."""
    rng, q, v, k, s = _inputs(layout, seed=LAYOUTS.index(layout))
    masks = random_masks(rng, layout.batch, layout.target, s)
    calls = []
    for args, mask_names in VARIANTS.values():
        calls.append({**args, **{name: masks[name] for name in mask_names}})

    u, kv = layout.heads
    python = pygqa.GroupQueryAttention(layout.head_dim, u, kv, use_bias=layout.use_bias,
                                       **dict(layout.options))
    f32 = [None if x is None else x.astype(np.float32) for x in (q, v, k)]
    python(*f32)
    py_weights = None
    if layout.weights_from == "python":
        py_weights = [rng.normal(scale=0.3, size=w.shape).astype(np.float32)
                      for w in python.get_weights()]
        python.set_weights(py_weights)

    r_args = {"head_dim": float(layout.head_dim), "num_query_heads": float(u),
              "num_key_value_heads": float(kv), "use_bias": layout.use_bias,
              **{name: float(value) if name == "sliding_window" else value
                 for name, value in layout.options}}
    from_r = r.fn("run_group")(r_args, py_weights, q, v, k, calls, r_seed=LAYOUTS.index(layout))
    if layout.weights_from == "r":
        python.set_weights([np.asarray(w, dtype=np.float32) for w in from_r["weights"]])

    py_results = []
    for call in calls:
        out = python(*f32, **call)
        if call.get("return_attention_scores"):
            py_results.append({"output": keras.ops.convert_to_numpy(out[0]),
                               "scores": keras.ops.convert_to_numpy(out[1])})
        else:
            py_results.append({"output": keras.ops.convert_to_numpy(out)})
    return {"r": from_r, "python": py_results, "py_layer": python, "py_weights": py_weights}


def test_case_count():
    assert len(CASES) >= 100


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.id for layout in LAYOUTS])
def test_weights_arrive_unchanged(r, layout):
    """Weights made on one side are, after the crossing, the other side's weights exactly."""
    run = _run_layout(r, layout)
    r_weights = run["r"]["weights"]
    py_weights = run["py_layer"].get_weights()
    assert len(r_weights) == len(py_weights) == layout.weight_count
    for r_w, py_w in zip(r_weights, py_weights):
        assert r_w.shape == py_w.shape
        np.testing.assert_array_equal(r_w.astype(np.float32), py_w)


@pytest.mark.parametrize(
    "layout, variant", CASES,
    ids=[f"{layout.id}-{variant}" for layout, variant in CASES],
)
def test_outputs_and_scores_match(r, layout, variant):
    run = _run_layout(r, layout)
    index = list(VARIANTS).index(variant)
    r_result, py_result = run["r"]["results"][index], run["python"][index]
    assert r_result["output"].shape == py_result["output"].shape == (
        layout.batch, layout.target, layout.query_dim)
    diff = record(max_abs_diff(r_result["output"], py_result["output"]),
                  f"{layout.id}-{variant} output")
    assert diff <= ATOL
    wants_scores = VARIANTS[variant][0].get("return_attention_scores", False)
    assert ("scores" in r_result) == wants_scores
    if wants_scores:
        source = layout.target if layout.source is None else layout.source
        assert r_result["scores"].shape == (layout.batch, layout.heads[0], layout.target, source)
        diff = record(max_abs_diff(r_result["scores"], py_result["scores"]),
                      f"{layout.id}-{variant} scores")
        assert diff <= ATOL
