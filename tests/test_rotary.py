"""The decoder options: rotary positions, query/key norms, soft cap, logit scale.

Held to a float64 numpy reference written here without pygqa's code (the
rotation turns each pair (i, i + h/2) by its own angle; the norm and the cap
are written out), and to one causal call for step-by-step decoding.
"""

import os
import tempfile

import keras
import numpy as np
import pytest
from gradients import loss_gradients
from helpers import ATOL, RTOL, compiled, to_numpy
from keras import ops

import pygqa

BATCH, LENGTH, FEATURES, HEAD_DIM, HEADS, KV_HEADS = 2, 7, 16, 8, 4, 2
WAVELENGTH = 100.0  # short, so that angles over 7 positions differ clearly


def _layer(rng, **options):
    layer = pygqa.GroupQueryAttention(HEAD_DIM, HEADS, KV_HEADS, **options)
    layer(np.zeros((1, 2, FEATURES), "float32"))
    layer.set_weights([
        rng.normal(scale=0.4, size=w.shape).astype("float32") + (1.0 if w.ndim == 1 and
                                                                 "norm" in p else 0.0)
        for w, p in zip(layer.get_weights(), [v.path for v in layer.weights])
    ])
    return layer


def _theta(head_dim, wavelength, factor, adjustment=None):
    theta = wavelength ** (-np.arange(head_dim // 2) * 2.0 / head_dim)
    if adjustment is not None:  # Llama 3.1, pair by pair
        for i, t in enumerate(theta):
            wave = 2 * np.pi / t
            low = adjustment["original_max_length"] / adjustment["low_freq_factor"]
            high = adjustment["original_max_length"] / adjustment["high_freq_factor"]
            if wave > low:
                theta[i] = t / adjustment["factor"]
            elif wave >= high:
                mix = ((adjustment["original_max_length"] / wave - adjustment["low_freq_factor"])
                       / (adjustment["high_freq_factor"] - adjustment["low_freq_factor"]))
                theta[i] = (1 - mix) * t / adjustment["factor"] + mix * t
    return theta / factor


def _rotate_reference(x, positions, wavelength, factor, adjustment=None):
    """x (b, t, n, h) turned pair by pair: (x_i, x_{i+h/2}) by positions * theta_i."""
    half = x.shape[-1] // 2
    theta = _theta(x.shape[-1], wavelength, factor, adjustment)  # (h/2,)
    angle = positions[:, :, None, None] * theta  # (b, t, 1, h/2)
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * np.cos(angle) - second * np.sin(angle),
                           second * np.cos(angle) + first * np.sin(angle)], axis=-1)


def _rms_reference(x, scale, epsilon):
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + epsilon) * scale


def decoder_reference(layer, x, positions=None, mask=None, causal=True):
    """float64 output (b, t, m) of `layer` (no bias handling needed: biases included)."""
    w = {v.path.split("/", 1)[1]: np.asarray(to_numpy(v), np.float64) for v in layer.weights}
    x = np.asarray(x, np.float64)
    b, t = x.shape[:2]
    q = np.einsum("btm,muh->btuh", x, w["query/kernel"]) + w.get("query/bias", 0.0)
    k = np.einsum("btm,mvh->btvh", x, w["key/kernel"]) + w.get("key/bias", 0.0)
    v = np.einsum("btm,mvh->btvh", x, w["value/kernel"]) + w.get("value/bias", 0.0)
    if layer.use_query_key_norm:
        q = _rms_reference(q, w["query_norm/scale"], layer.layer_norm_epsilon)
        k = _rms_reference(k, w["key_norm/scale"], layer.layer_norm_epsilon)
    if layer.rope_max_wavelength is not None:
        pos = np.broadcast_to(np.arange(t) if positions is None else positions, (b, t))
        pos = pos.astype(np.float64)
        rope = (layer.rope_max_wavelength, layer.rope_scaling_factor,
                layer.rope_frequency_adjustment)
        q, k = _rotate_reference(q, pos, *rope), _rotate_reference(k, pos, *rope)
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scale = layer.attention_scale or 1.0 / np.sqrt(q.shape[-1])
    logits = np.einsum("btuh,bsuh->buts", q, k) * scale
    if layer.logit_soft_cap is not None:
        logits = layer.logit_soft_cap * np.tanh(logits / layer.logit_soft_cap)
    keep = np.ones((b, 1, t, t), bool)
    if causal:
        keep &= np.tril(np.ones((t, t), bool))
    if layer.sliding_window is not None:
        keep &= np.abs(np.arange(t)[:, None] - np.arange(t)) < layer.sliding_window
    if mask is not None:
        keep &= mask[:, None]
    logits = np.where(keep, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    e = np.where(keep, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(-1, keepdims=True)
    probs = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    out = np.einsum("buts,bsuh->btuh", probs, v)
    if layer.use_gate:
        gate = np.einsum("btm,muh->btuh", x, w["gate/kernel"]) + w.get("gate/bias", 0.0)
        out = out / (1.0 + np.exp(-gate))
    return np.einsum("btuh,uhm->btm", out, w["attention_output/kernel"]) + w.get(
        "attention_output/bias", 0.0)


def _close(got, expected):
    """float32 against float64: ATOL relative to the output's scale (outputs here reach ~4)."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, atol=ATOL * scale, rtol=RTOL)


def _x(rng, batch=BATCH, length=LENGTH):
    return rng.normal(size=(batch, length, FEATURES)).astype("float32")


# (options, call arguments) per case; positions in the call are numpy.
# Row 1 is left-padded by 3: its positions are cumsum(padding mask) - 1, clipped at 0.
_PADDING = np.array([[True] * 7, [False] * 3 + [True] * 4])
_LEFT_PADDED = np.maximum(np.cumsum(_PADDING, axis=1) - 1, 0).astype("int32")
CASES = {
    "rope": (dict(rope_max_wavelength=WAVELENGTH), {}),
    "positions-given": (dict(rope_max_wavelength=WAVELENGTH),
                        dict(positions=np.arange(5, 5 + LENGTH, dtype="int32"))),
    "per-row-left-padded": (dict(rope_max_wavelength=WAVELENGTH),
                            dict(positions=_LEFT_PADDED)),
    "scaled": (dict(rope_max_wavelength=WAVELENGTH, rope_scaling_factor=2.5), {}),
    "qk-norm": (dict(rope_max_wavelength=WAVELENGTH, use_query_key_norm=True,
                     layer_norm_epsilon=1e-5), {}),
    "scale-fused": (dict(rope_max_wavelength=WAVELENGTH, attention_scale=0.7), {}),
    "soft-cap": (dict(rope_max_wavelength=WAVELENGTH, logit_soft_cap=0.8,
                      attention_scale=0.7, use_query_key_norm=True), {}),
    # Wavelengths 6.3, 63, 628, 6283 against 32 / (1, 4): slowed, blended and kept pairs.
    "llama3-adjusted": (dict(rope_max_wavelength=10000.0, rope_frequency_adjustment=dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_length=128)),
        dict(positions=np.arange(0, 70, 10, dtype="int32"))),
    "window-gate": (dict(rope_max_wavelength=WAVELENGTH, sliding_window=3, use_gate=True,
                         use_query_key_norm=True), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_layer_matches_float64_reference(case, rng):
    options, call = CASES[case]
    layer = _layer(rng, **options)
    x = _x(rng)
    mask = None
    if case == "per-row-left-padded":  # the padded keys are masked too
        mask = np.repeat(_PADDING[:, None, :], LENGTH, axis=1)
        call = dict(call, attention_mask=mask)
    got = to_numpy(layer(x, use_causal_mask=True, **call))
    expected = decoder_reference(layer, x, call.get("positions"), mask)
    _close(got, expected)
    # The explicit path (with scores) agrees with the path the layer chose.
    out, scores = layer(x, use_causal_mask=True, return_attention_scores=True, **call)
    _close(to_numpy(out), expected)
    assert tuple(scores.shape) == (BATCH, HEADS, LENGTH, LENGTH)


def test_rotation_leaves_position_zero_and_keeps_norms(rng):
    x = rng.normal(size=(1, 5, 2, HEAD_DIM)).astype("float32")
    turned = to_numpy(pygqa.rotary.rotate(x, np.arange(5)[None], 10000.0))
    np.testing.assert_allclose(turned[:, 0], x[:, 0], atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=-1), np.linalg.norm(x, axis=-1),
                               rtol=1e-6)
    # Half-split pairs (i, i + h/2), as keras_hub.layers.RotaryEmbedding: not interleaved.
    expected = _rotate_reference(x.astype(np.float64), np.arange(5.0)[None], 10000.0, 1.0)
    np.testing.assert_allclose(turned, expected, atol=1e-6)


@pytest.mark.parametrize("rolling", [False, True], ids=["plain-cache", "rolling-cache"])
def test_decoding_with_rotation_equals_one_causal_call(rolling, rng):
    # Rolling: a window of 3 in a 4-slot buffer, decoding 9 positions (it wraps twice).
    options = dict(rope_max_wavelength=WAVELENGTH, use_query_key_norm=True)
    if rolling:
        options["sliding_window"] = 3
    layer = _layer(rng, **options)
    x = _x(rng, length=9)
    expected = to_numpy(layer(x, use_causal_mask=True))
    _close(expected, decoder_reference(layer, x))
    traces = []

    def step(x, cache, index):
        traces.append(None)
        return layer(x, cache=cache, cache_update_index=index, use_causal_mask=True)

    step = compiled(step)
    cache = layer.empty_cache(BATCH, 4 if rolling else 12)
    outputs = []
    for i in range(9):
        out, cache = step(x[:, i : i + 1], cache, ops.convert_to_tensor(i, "int32"))
        outputs.append(to_numpy(out))
    _close(np.concatenate(outputs, axis=1), expected)
    if keras.backend.backend() != "torch":
        assert len(traces) == 1  # one compiled step for every index
    if not rolling:  # keys are stored rotated by their own positions
        keys = to_numpy(layer._transform(layer._key_dense(x), layer._key_norm,
                                         pygqa.rotary.default_positions(9)))
        _close(to_numpy(cache)[:, 0, :9], keys)


def test_decoding_from_a_cache_index_with_per_row_positions(rng):
    # A left-padded batch decoded with explicit positions (cumsum of the padding mask - 1).
    layer = _layer(rng, rope_max_wavelength=WAVELENGTH)
    x = _x(rng)
    pad = _PADDING
    mask = np.repeat(pad[:, None, :], LENGTH, axis=1)
    expected = decoder_reference(layer, x, _LEFT_PADDED, mask)
    cache = layer.empty_cache(BATCH, LENGTH)
    out, cache = layer(x[:, :4], cache=cache, cache_update_index=0, use_causal_mask=True,
                       positions=_LEFT_PADDED[:, :4], value_mask=pad)
    outputs = [to_numpy(out)]
    for i in range(4, LENGTH):
        out, cache = layer(x[:, i : i + 1], cache=cache, cache_update_index=i,
                           use_causal_mask=True, positions=_LEFT_PADDED[:, i : i + 1],
                           value_mask=pad)
        outputs.append(to_numpy(out))
    _close(np.concatenate(outputs, axis=1), expected)


def test_gradients_of_every_path_agree_and_match_finite_differences(rng):
    options = dict(rope_max_wavelength=WAVELENGTH, use_query_key_norm=True, attention_scale=0.6)
    layer = _layer(rng, **options)
    x = _x(rng)
    fused = loss_gradients(layer, x, use_causal_mask=True)
    explicit_layer = pygqa.GroupQueryAttention(HEAD_DIM, HEADS, KV_HEADS, flash_attention=False,
                                               **options)
    explicit_layer(x)
    explicit_layer.set_weights(layer.get_weights())
    explicit = loss_gradients(explicit_layer, x, use_causal_mask=True)
    for a, b in zip(fused, explicit):  # float32 sums of gradients up to ~40: 1e-6 of the scale
        np.testing.assert_allclose(a, b, atol=1e-6 * max(1.0, np.abs(b).max()), rtol=1e-4)
    # The new weights' gradient against central differences of the float64 reference.
    index = [v.path for v in layer.trainable_variables].index(
        layer._query_norm.scale.path)
    weights = layer.get_weights()
    position = [w.shape for w in weights].index((HEAD_DIM,))  # query_norm/scale

    def loss(delta):
        shifted = [w.copy() for w in weights]
        shifted[position][2] += delta
        layer.set_weights(shifted)
        value = (decoder_reference(layer, x) ** 2).sum()
        layer.set_weights(weights)
        return value

    numeric = (loss(1e-3) - loss(-1e-3)) / 2e-3
    np.testing.assert_allclose(fused[index][2], numeric, rtol=2e-3)


def test_mixed_precision_follows_float32(rng):
    options = dict(rope_max_wavelength=WAVELENGTH, use_query_key_norm=True, logit_soft_cap=2.0)
    layer = _layer(rng, **options)
    half = pygqa.GroupQueryAttention(HEAD_DIM, HEADS, KV_HEADS, dtype="mixed_bfloat16",
                                     **options)
    x = _x(rng)
    half(x)
    half.set_weights(layer.get_weights())
    got = to_numpy(ops.cast(half(x, use_causal_mask=True), "float32"))
    np.testing.assert_allclose(got, to_numpy(layer(x, use_causal_mask=True)), atol=0.1)
    assert keras.backend.standardize_dtype(half._query_norm.scale.dtype) == "float32"


def test_dropout_trains_with_rotation(rng):
    layer = _layer(rng, rope_max_wavelength=WAVELENGTH, dropout=0.5, seed=3)
    x = _x(rng)
    inference = to_numpy(layer(x, use_causal_mask=True))
    _close(inference, decoder_reference(layer, x))
    assert np.abs(to_numpy(layer(x, use_causal_mask=True, training=True)) - inference).max() > 1e-3


def test_config_and_saving_round_trip(rng):
    options = dict(rope_max_wavelength=WAVELENGTH, rope_scaling_factor=2.0,
                   use_query_key_norm=True, layer_norm_epsilon=1e-5, logit_soft_cap=3.0,
                   attention_scale=0.5)
    layer = _layer(rng, **options)
    config = layer.get_config()
    assert {k: config[k] for k in options} == options
    assert [v.path.split("/", 1)[1] for v in layer.weights][-2:] == [
        "query_norm/scale", "key_norm/scale"]
    inputs = keras.Input((LENGTH, FEATURES))
    model = keras.Model(inputs, layer(inputs, use_causal_mask=True))
    x = _x(rng)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = pygqa.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="decoder options.*rope_max_wavelength=100.0"):
        pygqa.to_keras(layer)


@pytest.mark.parametrize("options, error, words", [
    (dict(rope_max_wavelength=0), ValueError,
     "`rope_max_wavelength`.*Received: rope_max_wavelength=0"),
    (dict(rope_max_wavelength="big"), TypeError, "`rope_max_wavelength`"),
    (dict(rope_max_wavelength=100, rope_scaling_factor=-1.0), ValueError, "`rope_scaling_factor`"),
    (dict(logit_soft_cap=0.0), ValueError, "`logit_soft_cap`.*Received: logit_soft_cap=0.0"),
    (dict(use_query_key_norm=1), TypeError, "`use_query_key_norm`"),
    (dict(use_query_key_norm=True, layer_norm_epsilon=0), ValueError, "`layer_norm_epsilon`"),
    (dict(attention_scale=-0.1), ValueError, "`attention_scale`"),
    (dict(rope_max_wavelength=100, rope_frequency_adjustment=dict(factor=8.0)), ValueError,
     "`rope_frequency_adjustment`: expected None or a dict"),
    (dict(rope_max_wavelength=100, rope_frequency_adjustment=dict(
        factor=8.0, low_freq_factor=4.0, high_freq_factor=1.0, original_max_length=64)),
     ValueError, "low_freq_factor < high_freq_factor"),
], ids=["wavelength-zero", "wavelength-string", "scaling-negative", "cap-zero", "norm-int",
        "epsilon-zero", "scale-negative", "adjustment-keys", "adjustment-order"])
def test_bad_options_name_the_argument(options, error, words):
    with pytest.raises(error, match=words):
        pygqa.GroupQueryAttention(HEAD_DIM, HEADS, KV_HEADS, **options)


def test_rotation_needs_an_even_head_dim():
    with pytest.raises(ValueError, match="`head_dim`: expected an even.*head_dim=7"):
        pygqa.GroupQueryAttention(7, HEADS, KV_HEADS, rope_max_wavelength=100)


@pytest.mark.parametrize("positions, error, words", [
    (np.arange(LENGTH, dtype="float32"), TypeError, "positions.dtype=float32"),
    (np.arange(LENGTH + 1, dtype="int32"), ValueError, r"positions.shape=\(8,\)"),
    (np.zeros((3, LENGTH), "int32"), ValueError, r"positions.shape=\(3, 7\)"),
    (3, TypeError, "Received: positions=3"),
], ids=["float", "too-long", "wrong-batch", "scalar"])
def test_bad_positions_name_the_argument(positions, error, words, rng):
    layer = _layer(rng, rope_max_wavelength=WAVELENGTH)
    with pytest.raises(error, match=f"`positions`.*{words}"):
        layer(_x(rng), positions=positions)


def test_positions_without_rotation_and_capped_flash_attention_raise(rng):
    with pytest.raises(ValueError, match="`positions`: expected None.*rope_max_wavelength=None"):
        _layer(rng)(_x(rng), positions=np.arange(LENGTH))
    capped = pygqa.GroupQueryAttention(HEAD_DIM, HEADS, KV_HEADS, logit_soft_cap=1.0,
                                       flash_attention=True)
    with pytest.raises(ValueError, match="`flash_attention`.*logit_soft_cap"):
        capped(_x(rng))
