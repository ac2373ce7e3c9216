"""`flash_attention`: which attention path runs, the same numbers on each, clear refusals.

None (the default) lets the layer choose the fastest path for each call; True
requires the fused kernel; False always takes the explicit softmax(QK^T)V
path. Keras 3.15 accepts the argument but drops it from its config and treats
False like None; pygqa keeps it and honours it.
"""

import keras
import numpy as np
import pytest
from helpers import ATOL, RTOL, count_calls, inputs, random_masks, to_numpy

import pygqa
from pygqa.kernels import explicit


def _layers(rng, q, v, k):
    """One layer per setting, all with the same random weights."""
    layers = {flash: pygqa.GroupQueryAttention(4, 8, 2, flash_attention=flash)
              for flash in (None, True, False)}
    weights = None
    for layer in layers.values():
        layer(q, v, k)
        if weights is None:
            weights = [rng.normal(scale=0.3, size=w.shape).astype("float32")
                       for w in layer.get_weights()]
        layer.set_weights(weights)
    return layers


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_every_setting_gives_the_same_numbers(causal, rng):
    q, v, k = inputs(rng, batch=3, target=9, source=7)
    masks = random_masks(rng, 3, 9, 7)  # includes a query row with no key at all
    layers = _layers(rng, q, v, k)
    results = {flash: to_numpy(layer(q, v, k, use_causal_mask=causal, **masks))
               for flash, layer in layers.items()}
    for flash in (True, False):
        np.testing.assert_allclose(results[flash], results[None], atol=ATOL, rtol=RTOL)


def _count_explicit_calls(monkeypatch):
    return count_calls(monkeypatch, explicit, "attention")


def test_false_takes_the_explicit_path_and_true_the_fused_one(rng, monkeypatch):
    q, v, k = inputs(rng, target=6)
    layers = _layers(rng, q, v, k)
    calls = _count_explicit_calls(monkeypatch)
    layers[True](q, v, k)
    layers[None](q, v, k)
    assert calls == []  # both fused
    layers[False](q, v, k)
    assert calls == [1]


def test_true_refuses_calls_the_fused_kernel_cannot_serve(rng):
    q, v, k = inputs(rng, target=5)
    layer = pygqa.GroupQueryAttention(4, 4, 2, flash_attention=True, dropout=0.2)
    layer(q, v, k)  # inference: dropout is off, the fused kernel serves it
    with pytest.raises(ValueError, match="flash_attention=True, return_attention_scores=True"):
        layer(q, v, k, return_attention_scores=True)
    with pytest.raises(ValueError, match="flash_attention=True, dropout=0.2, training=True"):
        layer(q, v, k, training=True)


def test_false_and_none_serve_scores_and_dropout(rng):
    q, v, k = inputs(rng, target=5)
    for flash in (None, False):
        layer = pygqa.GroupQueryAttention(4, 4, 2, flash_attention=flash, dropout=0.2, seed=1)
        _, scores = layer(q, v, k, return_attention_scores=True, training=True)
        np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=ATOL)


def test_kept_in_the_config_and_through_saving(tmp_path, rng):
    layer = pygqa.GroupQueryAttention(4, 4, 2, flash_attention=False)
    assert layer.get_config()["flash_attention"] is False
    clone = pygqa.GroupQueryAttention.from_config(layer.get_config())
    assert clone.flash_attention is False
    inputs_ = keras.Input((5, 8))
    model = keras.Model(inputs_, layer(inputs_))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[-1].flash_attention is False
    assert pygqa.GroupQueryAttention(4, 4, 2).get_config()["flash_attention"] is None


def test_none_follows_keras_global_switch_and_an_explicit_value_wins(rng, monkeypatch):
    q, v, k = inputs(rng, target=5)
    default, fused = (pygqa.GroupQueryAttention(4, 4, 2, flash_attention=f) for f in (None, True))
    calls = _count_explicit_calls(monkeypatch)
    try:
        keras.config.disable_flash_attention()
        default(q, v, k)
        assert calls == [1]  # disabled globally: the explicit path
        fused(q, v, k)
        assert calls == [1]  # the layer's own True wins
    finally:
        keras.config.enable_flash_attention()  # Keras's default: "attempt" (None)
    assert keras.config.is_flash_attention_enabled() is None
    default(q, v, k)
    assert calls == [1]


def test_code_written_for_keras_runs_unchanged(rng):
    """The keywords a Keras user passes (`flash_attention`, `seed`) are accepted."""
    q, v, k = inputs(rng, target=5)
    theirs = keras.layers.GroupQueryAttention(4, 4, 2, seed=3)
    ours = pygqa.GroupQueryAttention(4, 4, 2, flash_attention=True, seed=3)
    theirs(q, v, k), ours(q, v, k)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(to_numpy(ours(q, v, k)), to_numpy(theirs(q, v, k)),
                               atol=ATOL, rtol=RTOL)
