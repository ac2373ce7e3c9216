"""The fast path's hand-written backward pass against autodiff and against Keras."""

import keras
import numpy as np
import pytest
from gradients import loss_gradients
from helpers import random_weights

import pygqa

# Relative to the largest gradient entry: some gradients are analytically zero
# (softmax ignores the key bias) and are float32 cancellation noise of large terms.
GRAD_RTOL = 1e-5


def _close(got, expected):
    scale = max(float(np.abs(e).max()) for e in expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=GRAD_RTOL * scale, rtol=0)


@pytest.fixture
def setup():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 37, 24)).astype("float32")
    mask = rng.random((2, 37, 37)) < 0.6
    mask[0, 3] = False  # a row with no key
    layer = pygqa.GroupQueryAttention(8, 8, 2)
    layer(x)
    random_weights(layer, rng)
    return layer, x, mask


@pytest.mark.parametrize("masks", ["none", "causal", "mask", "mask+causal"])
def test_fast_path_gradients_equal_autodiff_of_the_scores_path(setup, masks):
    layer, x, mask = setup
    kwargs = dict(use_causal_mask="causal" in masks)
    if masks.startswith("mask"):
        kwargs["attention_mask"] = mask
    fast = loss_gradients(layer, x, **kwargs)
    explicit = loss_gradients(layer, x, return_attention_scores=True, **kwargs)
    _close(fast, explicit)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients_equal_keras(setup, causal):
    layer, x, _ = setup
    theirs = keras.layers.GroupQueryAttention(8, 8, 2)
    theirs(x, x)
    theirs.set_weights(layer.get_weights())
    # Keras needs `value`; pygqa's self-attention call is the same function.
    ours = loss_gradients(layer, x, use_causal_mask=causal)
    wrapped = _SelfAttention(theirs)
    wrapped(x)
    _close(ours, loss_gradients(wrapped, x, use_causal_mask=causal))


class _SelfAttention(keras.layers.Layer):
    """keras.layers.GroupQueryAttention called as layer(x, x)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def call(self, x, use_causal_mask=False):
        return self.inner(x, x, use_causal_mask=use_causal_mask)
