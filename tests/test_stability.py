"""Numeric stability: huge and equal logits, head_dim 1, empty rows, zero lengths.

No input that the layer accepts may produce NaN or Inf, in the output, the
attention probabilities or the gradients; inputs it cannot compute on (a
sequence or feature axis of length 0) are refused with a named error.
"""

import re

import keras
import numpy as np
import pytest
from gradients import loss_gradients
from helpers import ATOL, RTOL, to_numpy
from reference import gqa_reference

import pygqa

POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]


def _layer(rng, q, v, head_dim=4, heads=(4, 2), dtype="float32", kernel_scale=0.3):
    layer = pygqa.GroupQueryAttention(head_dim, *heads, dtype=dtype)
    layer(q, v)
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32") for w in layer.get_weights()]
    weights[0] = weights[0] * (kernel_scale / 0.3)  # query kernel
    weights[2] = weights[2] * (kernel_scale / 0.3)  # key kernel
    layer.set_weights(weights)
    return layer, layer.get_weights()


def _mask_with_empty_rows(rng, batch, target, source):
    mask = rng.random((batch, target, source)) < 0.6
    mask[0, 1] = False  # a row with no key
    mask[-1] = False  # a whole batch element with no key
    return mask


@pytest.mark.parametrize("dtype", POLICIES)
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_logits_of_magnitude_1e4_with_empty_rows(dtype, scores, rng):
    q = rng.normal(size=(2, 9, 8)).astype("float32")
    v = rng.normal(size=(2, 6, 8)).astype("float32")
    # Projections of ~0.3 * 35 per feature: logits of a few 1e4 after the 1/sqrt(4) scale.
    layer, weights = _layer(rng, q, v, dtype=dtype, kernel_scale=35.0)
    mask = _mask_with_empty_rows(rng, 2, 9, 6)
    result = layer(q, v, attention_mask=mask, return_attention_scores=scores)
    out = to_numpy(result[0] if scores else result).astype("float32")
    assert np.isfinite(out).all()
    ref_out, ref_probs = gqa_reference(weights, q, v, mask=mask)
    logits_scale = np.abs(np.einsum("btm,muh->btuh", q, weights[0])).max() ** 2
    assert logits_scale > 1e4  # the case really has huge logits
    if scores:
        probs = to_numpy(result[1]).astype("float32")
        assert np.isfinite(probs).all()
        has_key = np.broadcast_to(mask.any(-1)[:, None], probs.shape[:-1])
        np.testing.assert_allclose(probs.sum(-1), has_key.astype("float32"), atol=1e-3)
        empty = ~mask.any(-1)  # (b, t)
        assert (probs.transpose(0, 2, 1, 3)[empty] == 0).all()  # rows without keys
    # Rows without keys give exactly the output bias, whatever the precision.
    np.testing.assert_allclose(out[-1], np.broadcast_to(weights[-1], out[-1].shape), atol=1e-2)
    if dtype == "float32":
        # Logits carry float32 rounding of ~1e4 * 6e-8 = 6e-4, which moves a
        # probability by at most that fraction: 1e-3 of the output's scale.
        np.testing.assert_allclose(out, ref_out, atol=1e-3 * np.abs(ref_out).max())


@pytest.mark.parametrize("dtype", POLICIES)
def test_gradients_stay_finite_with_huge_logits_and_empty_rows(dtype, rng):
    x = rng.normal(size=(2, 7, 8)).astype("float32")
    layer, _ = _layer(rng, x, x, dtype=dtype, kernel_scale=35.0)
    mask = _mask_with_empty_rows(rng, 2, 7, 7)
    for kwargs in (dict(attention_mask=mask), dict(attention_mask=mask, use_causal_mask=True),
                   dict(attention_mask=mask, return_attention_scores=True)):
        for grad in loss_gradients(layer, x, **kwargs):
            assert np.isfinite(np.asarray(grad, dtype="float32")).all(), kwargs


@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_all_equal_logits_give_the_mean_of_the_kept_values(scores, rng):
    q = rng.normal(size=(2, 5, 8)).astype("float32")
    v = rng.normal(size=(2, 11, 8)).astype("float32")
    layer, weights = _layer(rng, q, v, kernel_scale=0.0)  # logits all 0
    weights[1] = np.zeros_like(weights[1])  # and no query bias
    layer.set_weights(weights)
    mask = _mask_with_empty_rows(rng, 2, 5, 11)
    result = layer(q, v, attention_mask=mask, return_attention_scores=scores)
    out = to_numpy(result[0] if scores else result)
    ref_out, ref_probs = gqa_reference(weights, q, v, mask=mask)
    np.testing.assert_allclose(out, ref_out, atol=ATOL, rtol=RTOL)
    if scores:
        kept = mask.sum(-1, keepdims=True)[:, None]  # (b, 1, t, 1)
        uniform = np.where(mask[:, None], 1.0 / np.maximum(kept, 1), 0.0)
        np.testing.assert_allclose(to_numpy(result[1]), np.broadcast_to(uniform, ref_probs.shape),
                                   atol=ATOL)


@pytest.mark.parametrize("heads", [(1, 1), (8, 1), (8, 8)], ids=["single", "mqa", "mha"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_head_dim_1(heads, scores, rng):
    q = rng.normal(size=(2, 33, 3)).astype("float32")
    v = rng.normal(size=(2, 17, 5)).astype("float32")
    layer, weights = _layer(rng, q, v, head_dim=1, heads=heads, kernel_scale=3.0)
    result = layer(q, v, use_causal_mask=True, return_attention_scores=scores)
    out = to_numpy(result[0] if scores else result)
    ref_out, ref_probs = gqa_reference(weights, q, v, causal=True)
    np.testing.assert_allclose(out, ref_out, atol=ATOL * max(1, np.abs(ref_out).max()), rtol=RTOL)
    if scores:
        np.testing.assert_allclose(to_numpy(result[1]), ref_probs, atol=ATOL, rtol=RTOL)


def _zeros(*shape):
    return np.zeros(shape, "float32")


ZERO_LENGTHS = [
    ("query-length-0", dict(query=_zeros(2, 0, 8)), "`query`", "query.shape=(2, 0, 8)"),
    ("value-length-0", dict(value=_zeros(2, 0, 8), key=_zeros(2, 0, 8)), "`value`",
     "value.shape=(2, 0, 8)"),
    ("key-length-0", dict(key=_zeros(2, 0, 8)), "`key`", "key.shape=(2, 0, 8)"),
    ("query-features-0", dict(query=_zeros(2, 3, 0)), "`query`", "query.shape=(2, 3, 0)"),
    ("batch-0", dict(query=_zeros(0, 3, 8), value=_zeros(0, 5, 8), key=_zeros(0, 5, 8)),
     "`query`", "query.shape=(0, 3, 8)"),
    ("value-features-0", dict(value=_zeros(2, 5, 0), key=_zeros(2, 5, 0)), "`value`",
     "value.shape=(2, 5, 0)"),
]


@pytest.mark.parametrize("override, name, received", [c[1:] for c in ZERO_LENGTHS],
                         ids=[c[0] for c in ZERO_LENGTHS])
@pytest.mark.parametrize("built", [False, True], ids=["fresh", "built"])
def test_zero_lengths_are_refused(override, name, received, built):
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    args = dict(query=_zeros(2, 3, 8), value=_zeros(2, 5, 8), key=_zeros(2, 5, 8))
    if built:
        layer(**args)
    with pytest.raises(ValueError, match=re.escape(name) + ".*non-empty.*" + re.escape(received)):
        layer(**{**args, **override})


def test_an_empty_batch_is_refused():
    # Found here: a batch of 0 crashed the scores path on torch (a reshape of 0
    # elements with -1) and passed elsewhere; it is now refused everywhere.
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    for scores in (False, True):
        with pytest.raises(ValueError, match=re.escape("non-empty batch") + ".*"
                           + re.escape("query.shape=(0, 3, 8)")):
            layer(_zeros(0, 3, 8), _zeros(0, 5, 6), return_attention_scores=scores)


def test_symbolic_zero_length_is_refused():
    with pytest.raises(ValueError, match=re.escape("query.shape=(None, 0, 8)")):
        pygqa.GroupQueryAttention(4, 4, 2)(keras.Input((0, 8)))
