"""Incremental decoding with the key/value cache equals one call over the whole sequence."""

import keras
import numpy as np
import pytest
from helpers import ATOL, LAYOUTS, RTOL, compiled, random_weights, to_numpy
from keras import ops

import pygqa

BATCH, LENGTH, FEATURES, HEAD_DIM, MAX_LENGTH = 2, 9, 16, 8, 12


def _layer(rng, layout="gqa", dtype=None):
    num_query_heads, num_key_value_heads = LAYOUTS[layout]
    layer = pygqa.GroupQueryAttention(HEAD_DIM, num_query_heads, num_key_value_heads,
                                      dtype=dtype)
    layer(np.zeros((1, 2, FEATURES), "float32"))
    random_weights(layer, rng)
    return layer


def _sequence(rng):
    return rng.normal(size=(BATCH, LENGTH, FEATURES)).astype("float32")


def _decode(step, layer, x, prefill, **kwargs):
    """Runs `prefill` positions in one call, then the rest one position per call."""
    cache = layer.empty_cache(BATCH, MAX_LENGTH)
    output, cache = step(x[:, :prefill], cache, 0, **kwargs)
    outputs = [to_numpy(output)]
    for i in range(prefill, x.shape[1]):
        index = ops.convert_to_tensor(i, "int32")  # a tensor: one compiled step for all i
        output, cache = step(x[:, i : i + 1], cache, index, **kwargs)
        outputs.append(to_numpy(output))
    return np.concatenate(outputs, axis=1), cache


@pytest.mark.parametrize("prefill", [1, 4], ids=["token-by-token", "prefill-4"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_decoding_step_by_step_equals_one_causal_call(layout, prefill, rng):
    layer = _layer(rng, layout)
    x = _sequence(rng)
    expected = to_numpy(layer(x, use_causal_mask=True))

    def step(x, cache, index):
        return layer(x, cache=cache, cache_update_index=index, use_causal_mask=True)

    got, cache = _decode(step, layer, x, prefill)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    # The cache holds the projected keys and values of every position seen, nothing after.
    keys = to_numpy(layer._key_dense(x))
    values = to_numpy(layer._value_dense(x))
    cache = to_numpy(cache)
    np.testing.assert_allclose(cache[:, 0, :LENGTH], keys, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(cache[:, 1, :LENGTH], values, atol=ATOL, rtol=RTOL)
    assert not cache[:, :, LENGTH:].any()


def test_decoding_step_compiles_once_with_a_tensor_index(rng):
    layer = _layer(rng)
    x = _sequence(rng)
    expected = to_numpy(layer(x, use_causal_mask=True))
    traces = []

    def step(x, cache, index):
        traces.append(None)  # runs at each trace (jax, tensorflow) or call (torch)
        return layer(x, cache=cache, cache_update_index=index, use_causal_mask=True)

    got, _ = _decode(compiled(step), layer, x, prefill=1)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    if keras.backend.backend() != "torch":
        # One trace for the prefill call (index 0 as an int), one for every later step.
        assert len(traces) == 2


def test_padding_mask_over_cache_positions(rng):
    # A left-padded prompt: value_mask has the cache's length and drops pad positions.
    layer = _layer(rng)
    x = _sequence(rng)
    pad = np.ones((BATCH, LENGTH), bool)
    pad[1, :3] = False
    expected = to_numpy(layer(x, use_causal_mask=True, value_mask=pad))
    cache_pad = np.ones((BATCH, MAX_LENGTH), bool)
    cache_pad[:, :LENGTH] = pad

    def step(x, cache, index):
        return layer(x, cache=cache, cache_update_index=index, use_causal_mask=True,
                     value_mask=cache_pad)

    got, _ = _decode(step, layer, x, prefill=4)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


def test_cross_attention_cache_filled_once_then_read(rng):
    # Encoder-decoder use: the encoder's keys/values are written once, later
    # calls only read them (cache_update_index=None ignores value and key).
    layer = _layer(rng)
    decoder = _sequence(rng)
    encoder = rng.normal(size=(BATCH, 5, FEATURES)).astype("float32")
    expected = to_numpy(layer(decoder, encoder))
    cache = layer.empty_cache(BATCH, 5)
    first, cache = layer(decoder[:, :1], encoder, cache=cache, cache_update_index=0)
    rest, same_cache = layer(decoder[:, 1:], encoder * 0.0, cache=cache)
    got = np.concatenate([to_numpy(first), to_numpy(rest)], axis=1)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    np.testing.assert_array_equal(to_numpy(same_cache), to_numpy(cache))


def test_unwritten_positions_are_masked(rng):
    # Garbage in positions not yet written must not leak into the output.
    layer = _layer(rng)
    x = _sequence(rng)[:, :3]
    expected = to_numpy(layer(x))  # bidirectional over the 3 positions
    garbage = rng.normal(size=(BATCH, 2, MAX_LENGTH, 2, HEAD_DIM)).astype("float32") * 100
    output, _ = layer(x, cache=garbage, cache_update_index=0)
    np.testing.assert_allclose(to_numpy(output), expected, atol=ATOL, rtol=RTOL)


def test_scores_come_before_the_cache(rng):
    layer = _layer(rng)
    x = _sequence(rng)[:, :3]
    output, scores, cache = layer(x, cache=layer.empty_cache(BATCH, MAX_LENGTH),
                                  cache_update_index=0, use_causal_mask=True,
                                  return_attention_scores=True)
    assert tuple(output.shape) == (BATCH, 3, FEATURES)
    assert tuple(scores.shape) == (BATCH, 8, 3, MAX_LENGTH)
    assert tuple(cache.shape) == (BATCH, 2, MAX_LENGTH, 2, HEAD_DIM)
    scores = to_numpy(scores)
    assert not scores[..., 3:].any()  # nothing beyond the written positions
    np.testing.assert_allclose(np.triu(scores[0, 0, :, :3], k=1), 0.0)


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), ("mixed_float16", 2),
                                             ("mixed_bfloat16", 2)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cache_size_is_at_key_value_head_width(layout, dtype, itemsize, rng):
    layer = _layer(rng, layout, dtype=dtype)
    num_key_value_heads = LAYOUTS[layout][1]
    cache = layer.empty_cache(3, 64)
    assert tuple(cache.shape) == (3, 2, 64, num_key_value_heads, HEAD_DIM)
    assert keras.backend.standardize_dtype(cache.dtype) == layer.compute_dtype
    assert to_numpy(cache).nbytes == 2 * 3 * 64 * num_key_value_heads * HEAD_DIM * itemsize


@pytest.mark.parametrize("dtype, tolerance", [("mixed_float16", 1e-2), ("mixed_bfloat16", 6e-2)])
def test_half_precision_decoding_close_to_float32(dtype, tolerance, rng):
    reference = _layer(rng)
    half = pygqa.GroupQueryAttention(HEAD_DIM, 8, 2, dtype=dtype)
    half(np.zeros((1, 2, FEATURES), "float32"))
    half.set_weights(reference.get_weights())
    x = _sequence(rng)
    expected = to_numpy(reference(x, use_causal_mask=True))

    def step(x, cache, index):
        return half(x, cache=cache, cache_update_index=index, use_causal_mask=True)

    got, cache = _decode(step, half, x, prefill=2)
    assert keras.backend.standardize_dtype(cache.dtype) == dtype.split("_")[1]
    assert np.isfinite(got.astype("float32")).all()
    np.testing.assert_allclose(got.astype("float32"), expected,
                               atol=tolerance * np.abs(expected).max())


def test_functional_model_with_a_cache_input_and_output(rng):
    # The cache is an ordinary input/output of a Keras model (symbolic call).
    layer = _layer(rng)
    x_in = keras.Input((1, FEATURES))
    cache_in = keras.Input((2, MAX_LENGTH, 2, HEAD_DIM))
    output, cache_out = layer(x_in, cache=cache_in, cache_update_index=0,
                              use_causal_mask=True)
    assert tuple(cache_out.shape) == (None, 2, MAX_LENGTH, 2, HEAD_DIM)
    model = keras.Model([x_in, cache_in], [output, cache_out])
    x = _sequence(rng)[:, :1]
    got, cache = model.predict_on_batch([x, to_numpy(layer.empty_cache(BATCH, MAX_LENGTH))])
    np.testing.assert_allclose(got, to_numpy(layer(x)), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(cache[:, 0, :1], to_numpy(layer._key_dense(x)), atol=ATOL)


BAD_CACHE_CALLS = [
    ("cache-rank", dict(cache=np.zeros((2, 2, 12, 16), "float32"), cache_update_index=0),
     ValueError, r"`cache`.*\(2, 2, max_length, 2, 8\).*cache.shape=\(2, 2, 12, 16\)"),
    ("cache-heads", dict(cache=np.zeros((2, 2, 12, 8, 8), "float32"), cache_update_index=0),
     ValueError, r"`cache`.*cache.shape=\(2, 2, 12, 8, 8\)"),
    ("cache-batch", dict(cache=np.zeros((3, 2, 12, 2, 8), "float32"), cache_update_index=0),
     ValueError, r"`cache`.*cache.shape=\(3, 2, 12, 2, 8\)"),
    ("index-overflow", dict(cache_update_index=10), ValueError,
     r"`cache_update_index`.*max_length 12.*cache_update_index=10"),
    ("index-negative", dict(cache_update_index=-1), ValueError, "cache_update_index=-1"),
    ("index-fraction", dict(cache_update_index=1.5), ValueError, "cache_update_index=1.5"),
    ("index-string", dict(cache_update_index="0"), TypeError, "cache_update_index='0'"),
    ("index-bool", dict(cache_update_index=True), TypeError, "cache_update_index=True"),
    ("index-vector", dict(cache_update_index=np.array([0, 1])), TypeError,
     r"cache_update_index=tensor of shape \(2,\)"),
    ("value_mask-length", dict(cache_update_index=0, value_mask=np.ones((2, 3), bool)),
     ValueError, r"`value_mask`.*\(2, 12\).*value_mask.shape=\(2, 3\)"),
]


@pytest.mark.parametrize("override, error, message", [c[1:] for c in BAD_CACHE_CALLS],
                         ids=[c[0] for c in BAD_CACHE_CALLS])
def test_bad_cache_arguments(override, error, message, rng):
    layer = _layer(rng)
    args = dict(cache=layer.empty_cache(2, MAX_LENGTH))
    with pytest.raises(error, match=message):
        layer(_sequence(rng)[:, :3], **{**args, **override})


def test_empty_cache_rejects_bad_sizes(rng):
    layer = _layer(rng)
    with pytest.raises(ValueError, match="`max_length`.*max_length=0"):
        layer.empty_cache(2, 0)
    with pytest.raises(TypeError, match="`batch_size`.*batch_size='2'"):
        layer.empty_cache("2", 8)
