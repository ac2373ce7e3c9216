"""Property-based tests: random layouts, shapes and masks against the float64 reference.

Hypothesis draws every case; `derandomize=True` makes the drawn cases the same
on every run and machine, so CI is reproducible and a failure can be rerun.
A falsifying example that ever turns up is kept below as an `@example` row,
so it runs on every run even if the draws change.

On jax every new shape compiles (~5 s per example here), so there shapes,
head_dim and layout come from a short list (JAX_CONFIGS) and only masks,
flags and values vary; torch and tensorflow cover the full ranges.
"""

import keras
import numpy as np
from helpers import ATOL, RTOL, to_numpy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reference import gqa_reference

import pygqa

JAX = keras.backend.backend() == "jax"

# Every (num_query_heads, num_key_value_heads) with key/value heads dividing
# query heads, up to 8 query heads: 20 layouts.
LAYOUTS = [(u, v) for u in range(1, 9) for v in range(1, u + 1) if u % v == 0]

# (batch, target, source, query_dim, value_dim, key_dim, head_dim, (u, v)) for jax:
# T != S, T == S, single positions, the largest lengths, head_dim 1 and 16.
JAX_CONFIGS = [
    (2, 7, 5, 8, 8, 8, 4, (8, 2)),
    (1, 1, 33, 6, 10, 4, 16, (4, 1)),
    (3, 33, 1, 5, 5, 5, 1, (3, 3)),
    (2, 13, 13, 8, 4, 6, 2, (6, 2)),
]

# Examples per property and backend: 20-40 s per backend in total here.
EXAMPLES = {"torch": 100, "tensorflow": 80, "jax": 25}[keras.backend.backend()]

PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MASK_KINDS = ("query_mask", "value_mask", "key_mask", "attention_mask")


@st.composite
def cases(draw):
    if JAX:
        (batch, target, source, query_dim, value_dim, key_dim, head_dim,
         (num_query_heads, num_key_value_heads)) = draw(st.sampled_from(JAX_CONFIGS))
    else:
        batch = draw(st.integers(1, 3))
        target, source = draw(st.integers(1, 33)), draw(st.integers(1, 33))
        query_dim, value_dim = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        key_dim = draw(st.one_of(st.just(value_dim), st.integers(1, 12)))
        head_dim = draw(st.integers(1, 16))
        num_query_heads, num_key_value_heads = draw(st.sampled_from(LAYOUTS))
    return dict(
        batch=batch, target=target, source=source,
        query_dim=query_dim, value_dim=value_dim, key_dim=key_dim,
        head_dim=head_dim,
        num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
        use_bias=draw(st.booleans()),
        masks=draw(st.sets(st.sampled_from(MASK_KINDS))),
        # Probability that a mask entry is True; 0 masks everything.
        density=draw(st.sampled_from([0.0, 0.3, 0.8, 1.0])),
        empty_row=draw(st.booleans()),  # one query row loses every key
        empty_batch=draw(st.booleans()),  # one batch element loses every key
        integer_masks=draw(st.booleans()),  # 0/1 int32 masks instead of bool
        causal=draw(st.booleans()),
        scores=draw(st.booleans()),
        pass_key=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _build(case):
    """The inputs, masks and a layer with random weights (biases too) for a case."""
    rng = np.random.default_rng(case["seed"])
    b, t, s = case["batch"], case["target"], case["source"]
    q = rng.normal(size=(b, t, case["query_dim"])).astype("float32")
    v = rng.normal(size=(b, s, case["value_dim"])).astype("float32")
    k = rng.normal(size=(b, s, case["key_dim"])).astype("float32") if case["pass_key"] else None
    shapes = dict(query_mask=(b, t), value_mask=(b, s), key_mask=(b, s),
                  attention_mask=(b, t, s))
    masks = {name: rng.random(shapes[name]) < case["density"] for name in sorted(case["masks"])}
    if case["empty_row"]:
        masks.setdefault("attention_mask", np.ones((b, t, s), bool))
        masks["attention_mask"][rng.integers(b), rng.integers(t)] = False
    if case["empty_batch"]:
        masks.setdefault("value_mask", np.ones((b, s), bool))
        masks["value_mask"][rng.integers(b)] = False
    if case["integer_masks"]:
        masks = {name: m.astype("int32") for name, m in masks.items()}

    layer = pygqa.GroupQueryAttention(case["head_dim"], case["num_query_heads"],
                                      case["num_key_value_heads"], use_bias=case["use_bias"])
    layer(q, v, k)
    layer.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                       for w in layer.get_weights()])
    return layer, q, v, k, masks


def _keep(masks, b, t, s):
    keep = np.ones((b, t, s), dtype=bool)
    for name, m in masks.items():
        m = m.astype(bool)
        keep &= {"query_mask": m[:, :, None], "attention_mask": m}.get(name, m[:, None, :])
    return keep


def _tolerance(expected):
    # float32 sums over at most 33 positions and 12 features: a few ulp of the
    # output's scale. Outputs here reach ~10, so ATOL is scaled by it.
    return dict(atol=ATOL * max(1.0, float(np.abs(expected).max(initial=0.0))), rtol=RTOL)


# Regression rows: falsifying examples found by this file are kept here.
@example(dict(batch=1, target=1, source=1, query_dim=1, value_dim=1, key_dim=1, head_dim=1,
              num_query_heads=1, num_key_value_heads=1, use_bias=True, masks={"value_mask"},
              density=0.0, empty_row=False, empty_batch=False, integer_masks=False, causal=False,
              scores=False, pass_key=False, seed=0))
@PROPERTY_SETTINGS
@given(cases())
def test_matches_the_float64_reference(case):
    layer, q, v, k, masks = _build(case)
    b, t, s = case["batch"], case["target"], case["source"]
    result = layer(q, v, k, use_causal_mask=case["causal"],
                   return_attention_scores=case["scores"], **masks)
    keep = _keep(masks, b, t, s)
    ref_out, ref_probs = gqa_reference(layer.get_weights(), q, v, k, mask=keep,
                                       causal=case["causal"], use_bias=case["use_bias"])
    out = to_numpy(result[0] if case["scores"] else result)
    assert out.shape == (b, t, case["query_dim"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref_out, **_tolerance(ref_out))
    if case["scores"]:
        probs = to_numpy(result[1])
        assert probs.shape == (b, case["num_query_heads"], t, s)
        np.testing.assert_allclose(probs, ref_probs, atol=ATOL, rtol=RTOL)
        # Rows with a key sum to 1, rows without one are all zero.
        if case["causal"]:
            keep &= np.tril(np.ones((t, s), dtype=bool))
        has_key = np.broadcast_to(keep.any(-1)[:, None], probs.shape[:-1])
        np.testing.assert_allclose(probs.sum(-1), has_key.astype("float32"), atol=1e-5)


@PROPERTY_SETTINGS
@given(cases())
def test_masked_positions_do_not_change_the_output(case):
    """Overwriting the value and key at positions no query may see changes nothing."""
    layer, q, v, k, masks = _build(case)
    b, t, s = case["batch"], case["target"], case["source"]
    keep = _keep(masks, b, t, s)
    if case["causal"]:
        keep &= np.tril(np.ones((t, s), dtype=bool))
    unseen = ~keep.any(axis=1)  # (b, s): no query row attends there
    kwargs = dict(masks, use_causal_mask=case["causal"], return_attention_scores=case["scores"])
    before = layer(q, v, k, **kwargs)
    v2 = np.where(unseen[:, :, None], np.float32(1e3), v)
    k2 = None if k is None else np.where(unseen[:, :, None], np.float32(-1e3), k)
    after = layer(q, v2, k2, **kwargs)
    if case["scores"]:
        (before, scores_before), (after, scores_after) = before, after
        np.testing.assert_allclose(to_numpy(scores_after), to_numpy(scores_before),
                                   atol=ATOL, rtol=RTOL)
    before, after = to_numpy(before), to_numpy(after)
    np.testing.assert_allclose(after, before, **_tolerance(before))
