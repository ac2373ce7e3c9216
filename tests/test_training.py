"""Dropout, implicit Keras masks, causal masks and gradients."""

import keras
import numpy as np
import pytest
from helpers import ATOL, RTOL, explicit_mask, inputs, random_masks, to_numpy

import pygqa


def test_dropout_only_in_training_and_seeded(rng):
    q, v, k = inputs(rng, target=9)
    a = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.5, seed=42)
    b = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.5, seed=42)
    a(q), b(q)
    b.set_weights(a.get_weights())
    inference = to_numpy(a(q))
    np.testing.assert_allclose(to_numpy(a(q, training=False)), inference, atol=ATOL)
    train_a, train_b = to_numpy(a(q, training=True)), to_numpy(b(q, training=True))
    assert np.abs(train_a - inference).max() > 1e-3
    np.testing.assert_array_equal(train_a, train_b)  # same seed, same first draw
    assert np.abs(to_numpy(a(q, training=True)) - train_a).max() > 1e-3  # draws move on


def test_dropout_scores_are_taken_before_dropout(rng):
    q, _, _ = inputs(rng, target=6)
    layer = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.5, seed=1)
    _, scores = layer(q, return_attention_scores=True, training=True)
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=ATOL)


def test_keras_masks_equal_an_explicit_attention_mask(rng):
    q, v, k = inputs(rng, batch=3, target=8, source=6)
    layer = pygqa.GroupQueryAttention(4, 8, 2)
    masks = random_masks(rng, 3, 8, 6)
    got = to_numpy(layer(q, v, k, **masks))
    explicit = explicit_mask(3, 8, 6, **masks)
    np.testing.assert_allclose(got, to_numpy(layer(q, v, k, attention_mask=explicit)),
                               atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("target, source", [(7, 7), (5, 9), (9, 5)], ids=["square", "wide",
                                                                         "tall"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_causal_equals_a_top_left_lower_triangular_mask(target, source, scores, rng):
    q, v, k = inputs(rng, target=target, source=source)
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    tril = np.broadcast_to(np.tril(np.ones((target, source), bool)), (2, target, source))
    causal = layer(q, v, k, use_causal_mask=True, return_attention_scores=scores)
    explicit = layer(q, v, k, attention_mask=tril, return_attention_scores=scores)
    if scores:
        causal, explicit = causal[0], explicit[0]
    np.testing.assert_allclose(to_numpy(causal), to_numpy(explicit), atol=ATOL, rtol=RTOL)


def test_implicit_embedding_mask_is_honoured_and_propagated():
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]], "int32")
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    x = embedding(tokens)
    out = layer(x)
    explicit = layer(keras.ops.convert_to_tensor(to_numpy(x)),
                     attention_mask=explicit_mask(2, 5, 5, tokens != 0, tokens != 0))
    np.testing.assert_allclose(to_numpy(out), to_numpy(explicit), atol=ATOL)
    mask = getattr(out, "_keras_mask", None)
    assert mask is not None and (to_numpy(mask) == (tokens != 0)).all()


def test_model_trains_and_loss_decreases(rng):
    inputs_ = keras.Input((6, 8))
    outputs = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.1, seed=0)(inputs_,
                                                                      use_causal_mask=True)
    model = keras.Model(inputs_, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = rng.normal(size=(16, 6, 8)).astype("float32")
    y = np.roll(x, 1, axis=1)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
