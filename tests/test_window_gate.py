"""`sliding_window` and `use_gate`: Keras 3.15's two options, the same numbers as its layer.

Oracles: `keras.layers.GroupQueryAttention` with the same options and weights
(on every row that has a key: on rows without one Keras's own paths disagree,
see pygqa's masking rule), the layer given the band as an explicit
`attention_mask`, and one causal windowed call for step-by-step decoding.
"""

import keras
import numpy as np
import pytest
from helpers import ATOL, RTOL, explicit_mask, inputs, random_masks, to_numpy
from reference import gqa_reference

import pygqa

T, S = 9, 9


def _band(target, source, window, causal):
    rows, cols = np.arange(target)[:, None], np.arange(source)[None]
    keep = np.abs(rows - cols) < window
    return keep & (cols <= rows) if causal else keep


def _pair(rng, q, v, k, **options):
    """pygqa's layer and Keras's, same options, same random weights."""
    ours = pygqa.GroupQueryAttention(4, 8, 2, **options)
    theirs = keras.layers.GroupQueryAttention(4, 8, 2, **options)
    ours(q, v, k), theirs(q, v, k)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32") for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def _rows_with_a_key(keep):
    return keep.any(-1)  # (b, t)


@pytest.mark.parametrize("target, source", [(9, 9), (7, 11), (11, 6)],
                         ids=["square", "wide", "tall"])
@pytest.mark.parametrize("window", [1, 2, 7, "T-1", "T", "T+3"])
@pytest.mark.parametrize("causal", [False, True], ids=["band", "causal-band"])
@pytest.mark.parametrize("gate", [False, True], ids=["plain", "gated"])
def test_equals_keras_with_the_same_options(target, source, window, causal, gate, rng):
    window = {"T-1": target - 1, "T": target, "T+3": target + 3}.get(window, window)
    q, v, k = inputs(rng, batch=2, target=target, source=source)
    ours, theirs = _pair(rng, q, v, k, sliding_window=window, use_gate=gate)
    keep = np.broadcast_to(_band(target, source, window, causal), (2, target, source))
    rows = _rows_with_a_key(keep)
    for scores in (False, True):
        got = ours(q, v, k, use_causal_mask=causal, return_attention_scores=scores)
        expected = theirs(q, v, k, use_causal_mask=causal, return_attention_scores=scores)
        if scores:
            (got, got_scores), (expected, expected_scores) = got, expected
            np.testing.assert_allclose(to_numpy(got_scores)[:, :, rows[0]],
                                       to_numpy(expected_scores)[:, :, rows[0]],
                                       atol=ATOL, rtol=RTOL)
            assert (to_numpy(got_scores)[np.broadcast_to(~keep[:, None], got_scores.shape)]
                    == 0).all()
        np.testing.assert_allclose(to_numpy(got)[rows], to_numpy(expected)[rows],
                                   atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("causal", [False, True], ids=["band", "causal-band"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_window_with_every_mask_kind_equals_the_explicit_band(causal, scores, rng):
    q, v, k = inputs(rng, batch=3, target=8, source=10)
    masks = random_masks(rng, 3, 8, 10)
    layer = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=3)
    plain = pygqa.GroupQueryAttention(4, 8, 2)
    layer(q, v, k), plain(q, v, k)
    plain.set_weights(layer.get_weights())
    got = layer(q, v, k, use_causal_mask=causal, return_attention_scores=scores, **masks)
    keep = explicit_mask(3, 8, 10, **masks) & _band(8, 10, 3, causal)
    expected = plain(q, v, k, attention_mask=keep, return_attention_scores=scores)
    if scores:
        got, expected = got[0], expected[0]
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=ATOL, rtol=RTOL)
    # Rows with no key in their window keep pygqa's rule: output = output bias.
    empty = ~keep.any(-1)
    assert empty.any()
    bias = to_numpy(layer.get_weights()[-1])
    np.testing.assert_allclose(to_numpy(got)[empty], np.broadcast_to(bias, (empty.sum(), 16)),
                               atol=ATOL)


def test_flash_attention_paths_agree_with_a_window(rng):
    q, v, k = inputs(rng, batch=2, target=12)
    layers = [pygqa.GroupQueryAttention(4, 4, 2, sliding_window=4, use_gate=True,
                                        flash_attention=f) for f in (None, True, False)]
    for layer in layers:
        layer(q)
        layer.set_weights(layers[0].get_weights())
    results = [to_numpy(layer(q, use_causal_mask=True)) for layer in layers]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=ATOL, rtol=RTOL)


def test_dropout_never_reaches_outside_the_window(rng):
    q, _, _ = inputs(rng, batch=2, target=10)
    layer = pygqa.GroupQueryAttention(4, 4, 2, sliding_window=3, dropout=0.5, seed=2)
    _, scores = layer(q, return_attention_scores=True, training=True)
    outside = np.broadcast_to(~_band(10, 10, 3, False), scores.shape)
    assert (to_numpy(scores)[outside] == 0).all()
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=ATOL)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("window", [None, 3], ids=["full", "window-3"])
def test_equals_the_float64_reference_gate_and_window(use_bias, window, rng):
    """The gate scales each head's output by sigmoid of its own query projection."""
    q, v, k = inputs(rng, batch=2, target=7, source=8)
    layer = pygqa.GroupQueryAttention(4, 8, 2, use_gate=True, sliding_window=window,
                                      use_bias=use_bias)
    layer(q, v, k)
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32")
               for w in layer.get_weights()]
    layer.set_weights(weights)
    names = [w.path for w in layer.weights]
    gate_at = 4 if use_bias else 2
    assert names[gate_at].endswith("/gate/kernel")  # Keras's order: after the key's weights
    expected, _ = gqa_reference(weights, q, v, k, causal=True, use_bias=use_bias,
                                sliding_window=window, use_gate=True)
    np.testing.assert_allclose(to_numpy(layer(q, v, k, use_causal_mask=True)), expected,
                               atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_gate_and_match_keras(rng):
    q, v, k = inputs(rng, batch=2, target=6)
    ours, theirs = _pair(rng, q, v, k, use_gate=True, sliding_window=3)
    losses = []
    for layer in (ours, theirs):
        inputs_ = keras.Input((6, 16))
        model = keras.Model(inputs_, layer(inputs_, inputs_, use_causal_mask=True))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        history = model.fit(q, np.zeros_like(q), batch_size=2, epochs=3, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(ours.get_weights()[4]), to_numpy(theirs.get_weights()[4]),
                               atol=1e-5)


@pytest.mark.parametrize("options", [dict(sliding_window=3), dict(use_gate=True),
                                     dict(sliding_window=2, use_gate=True)],
                         ids=["window", "gate", "both"])
def test_conversions_and_saving_keep_the_options_and_the_numbers(options, rng, tmp_path):
    q, v, k = inputs(rng, batch=2, target=7)
    ours, theirs = _pair(rng, q, v, k, **options)
    expected = to_numpy(ours(q, v, k, use_causal_mask=True))
    converted = pygqa.from_keras(theirs)
    back = pygqa.to_keras(ours)
    for layer in (converted, back):
        for name, value in options.items():
            assert layer.get_config()[name] == value
    np.testing.assert_allclose(to_numpy(converted(q, v, k, use_causal_mask=True)), expected,
                               atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(to_numpy(back(q, v, k, use_causal_mask=True)), expected,
                               atol=ATOL, rtol=RTOL)
    inputs_ = keras.Input((7, 16))
    model = keras.Model(inputs_, ours(inputs_, use_causal_mask=True))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for name, value in options.items():
        assert loaded.layers[-1].get_config()[name] == value
    np.testing.assert_allclose(to_numpy(loaded(q)), to_numpy(ours(q, use_causal_mask=True)),
                               atol=ATOL, rtol=RTOL)


def test_gated_multi_head_attention_converts(rng):
    q, v, k = inputs(rng, batch=2, target=6)
    mha = keras.layers.MultiHeadAttention(4, 4, use_gate=True)
    mha(q, v, k)
    mha.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                     for w in mha.get_weights()])
    gqa = pygqa.from_multi_head_attention(mha, num_key_value_heads=4)
    assert gqa.use_gate
    np.testing.assert_allclose(to_numpy(gqa(q, v, k)), to_numpy(mha(q, v, k)),
                               atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("prefill", [1, 5], ids=["token-by-token", "prefill-5"])
def test_windowed_decoding_equals_one_causal_windowed_call(prefill, rng):
    x = rng.normal(size=(2, 11, 16)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=3, use_gate=True)
    whole = to_numpy(layer(x, use_causal_mask=True))
    cache = layer.empty_cache(2, 14)
    out, cache = layer(x[:, :prefill], cache=cache, cache_update_index=0, use_causal_mask=True)
    outputs = [to_numpy(out)]
    for i in range(prefill, 11):
        out, cache = layer(x[:, i : i + 1], cache=cache, cache_update_index=i,
                           use_causal_mask=True)
        outputs.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole, atol=ATOL, rtol=RTOL)


def _decode_rolling(layer, x, max_length, chunk, step=None):
    """Decodes `x` into a rolling cache of `max_length` slots, `chunk` positions per call."""
    step = step or (lambda x_, cache, i: layer(x_, cache=cache, cache_update_index=i,
                                               use_causal_mask=True))
    cache = layer.empty_cache(x.shape[0], max_length)
    outputs = []
    for i in range(0, x.shape[1], chunk):
        out, cache = step(x[:, i : i + chunk], cache, keras.ops.convert_to_tensor(i, "int32"))
        outputs.append(to_numpy(out))
    return np.concatenate(outputs, axis=1), cache


@pytest.mark.parametrize("max_length, chunk", [(3, 1), (4, 2), (7, 5), (30, 4)],
                         ids=["window-slots", "window+1", "window+4-prefill", "longer"])
def test_rolling_cache_of_window_size_decodes_like_one_call(max_length, chunk, rng):
    """Memory bounded by the window: slots are reused, the numbers stay those of one call."""
    x = rng.normal(size=(2, 17, 16)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=3)
    whole = to_numpy(layer(x, use_causal_mask=True))
    decoded, cache = _decode_rolling(layer, x, max_length, chunk)
    assert tuple(cache.shape) == (2, 2, max_length, 2, 4)
    np.testing.assert_allclose(decoded, whole, atol=ATOL, rtol=RTOL)


def test_rolling_decoding_compiles_once(rng):
    x = rng.normal(size=(1, 9, 16)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 4, 1, sliding_window=4)
    whole = to_numpy(layer(x, use_causal_mask=True))
    traces = []

    def step(x_step, cache, index):
        traces.append(1)
        return layer(x_step, cache=cache, cache_update_index=index, use_causal_mask=True)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(step)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(step)
    else:
        compiled = step
    decoded, _ = _decode_rolling(layer, x, 4, 1, step=compiled)
    np.testing.assert_allclose(decoded, whole, atol=ATOL, rtol=RTOL)
    if backend != "torch":
        assert len(traces) == 1


def test_rolling_cache_refuses_writes_that_overwrite_what_they_read(rng):
    x = rng.normal(size=(1, 8, 16)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 4, 2, sliding_window=3)
    cache = layer.empty_cache(1, 4)
    with pytest.raises(ValueError, match=r"`cache`: a rolling cache of max_length 4 cannot take "
                                         r"3 new positions with sliding_window=3.*>= 5.*at most 2"):
        layer(x[:, 1:4], cache=cache, cache_update_index=2, use_causal_mask=True)
    with pytest.raises(ValueError, match="cannot take 5 new positions"):
        layer(x[:, :5], cache=cache, cache_update_index=0, use_causal_mask=True)
    layer(x[:, :4], cache=cache, cache_update_index=0, use_causal_mask=True)  # fits, no wrap
