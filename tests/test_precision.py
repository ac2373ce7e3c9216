"""Half-precision policies and extreme logits: finite outputs close to float32."""

import keras
import numpy as np
import pytest
from helpers import inputs, to_numpy

import pygqa


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_mixed_precision_is_close_to_float32(policy, scores, rng):
    q, v, k = inputs(rng, batch=2, target=9, source=11)
    reference = pygqa.GroupQueryAttention(8, 4, 2)
    half = pygqa.GroupQueryAttention(8, 4, 2, dtype=policy)
    reference(q, v, k), half(q, v, k)
    half.set_weights(reference.get_weights())
    mask = rng.random((2, 9, 11)) < 0.5
    mask[0, 0] = False
    expected = reference(q, v, k, attention_mask=mask, return_attention_scores=scores)
    got = half(q, v, k, attention_mask=mask, return_attention_scores=scores)
    if scores:
        (expected, _), (got, _) = expected, got
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    got = to_numpy(got).astype("float32")
    assert np.isfinite(got).all()
    # float16 keeps ~3 decimal digits, bfloat16 ~2: relative to the output's scale.
    tolerance = 1e-2 if policy == "mixed_float16" else 6e-2
    np.testing.assert_allclose(got, to_numpy(expected), atol=tolerance * np.abs(got).max())


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_logits_of_magnitude_1e4_stay_finite(dtype, scores, rng):
    q, _, _ = inputs(rng, batch=1, target=6)
    layer = pygqa.GroupQueryAttention(4, 2, 1, dtype=dtype)
    layer(q)
    weights = layer.get_weights()
    weights[0] = weights[0] * 300.0  # query kernel: logits reach ~1e4
    weights[2] = weights[2] * 300.0  # key kernel
    layer.set_weights(weights)
    result = layer(q, use_causal_mask=True, return_attention_scores=scores)
    out = result[0] if scores else result
    assert np.isfinite(to_numpy(out).astype("float32")).all()
    if scores:
        probs = to_numpy(result[1]).astype("float32")
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-2)
