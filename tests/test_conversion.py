"""Conversions: a multi-head checkpoint to GQA (mean-pooling), Keras's GQA to and from pygqa's.

Oracles: keras.layers.MultiHeadAttention and keras.layers.GroupQueryAttention
with the source weights, a numpy reshape-and-mean of the kernels written
independently of pygqa.conversion, and the float64 numpy attention in
reference.py run on those pooled weights.
"""

import keras
import numpy as np
import pytest
from helpers import ATOL, RTOL, inputs, random_weights, to_numpy
from reference import gqa_reference

import pygqa

# (target, source, query_dim, value_dim, key_dim): self-attention-like, and
# cross-attention with odd lengths and three different feature sizes.
SHAPES = {"T7": (7, 7, 16, 16, 16), "T5xS9-dims16x12x10": (5, 9, 16, 12, 10)}


def _mha(rng, num_heads, key_dim, shape, use_bias=True, **kwargs):
    """A built MultiHeadAttention with random weights, and its inputs."""
    target, source, query_dim, value_dim, key_dim_in = shape
    q, v, k = inputs(rng, batch=2, target=target, source=source, query_dim=query_dim,
                     value_dim=value_dim, key_dim=key_dim_in)
    mha = keras.layers.MultiHeadAttention(num_heads, key_dim, use_bias=use_bias, **kwargs)
    # build(), not a call: Keras's fused path on jax cannot run key_dim != value_dim.
    mha.build(q.shape, v.shape, k.shape)
    random_weights(mha, rng)
    return mha, (q, v, k)


def _masks(rng, batch, target, source):
    """An attention mask that leaves every query row at least one key."""
    mask = rng.random((batch, target, source)) < 0.6
    mask[:, :, 0] = True
    return mask


def _reference_pool(array, groups, axis):
    """Mean over contiguous runs of heads: (.., u, ..) -> (.., groups, ..), float64."""
    array = np.asarray(array, dtype=np.float64)
    shape = array.shape[:axis] + (groups, array.shape[axis] // groups) + array.shape[axis + 1:]
    return array.reshape(shape).mean(axis=axis + 1)


def _assert_close(got, expected):
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_as_many_key_value_heads_as_heads_reproduces_mha(rng, shape, use_bias):
    mha, (q, v, k) = _mha(rng, 4, 8, SHAPES[shape], use_bias=use_bias)
    gqa = pygqa.from_multi_head_attention(mha, num_key_value_heads=4)
    # Copies, bit for bit: a mean over one head is the head.
    for ours, theirs in zip(gqa.get_weights(), mha.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    mask = _masks(rng, q.shape[0], q.shape[1], v.shape[1])
    for kwargs in ({}, {"use_causal_mask": True, "attention_mask": mask}):
        out, scores = gqa(q, v, k, return_attention_scores=True, **kwargs)
        mha_out, mha_scores = mha(q, v, k, return_attention_scores=True, **kwargs)
        _assert_close(out, mha_out)
        _assert_close(scores, mha_scores)
        _assert_close(gqa(q, v, k, **kwargs), mha(q, v, k, **kwargs))


@pytest.mark.parametrize("heads, groups", [(4, 2), (6, 3), (4, 1)], ids=["gqa4x2", "gqa6x3", "mqa"])
def test_heads_already_equal_within_groups_convert_exactly(rng, heads, groups):
    mha, (q, v, k) = _mha(rng, heads, 4, SHAPES["T5xS9-dims16x12x10"])
    weights = mha.get_weights()
    size = heads // groups
    for index in (2, 3, 4, 5):  # key/value kernels (m, u, h) and biases (u, h)
        axis = 1 if weights[index].ndim == 3 else 0
        first = np.take(weights[index], np.arange(0, heads, size), axis=axis)
        weights[index] = np.repeat(first, size, axis=axis)  # every head = its group's first
    mha.set_weights(weights)
    gqa = pygqa.from_multi_head_attention(mha, groups)
    converted = gqa.get_weights()
    for index in (2, 3, 4, 5):
        axis = 1 if weights[index].ndim == 3 else 0
        expected = np.take(weights[index], np.arange(0, heads, size), axis=axis)
        np.testing.assert_array_equal(converted[index], expected)
    mask = _masks(rng, q.shape[0], q.shape[1], v.shape[1])
    _assert_close(gqa(q, v, k, attention_mask=mask), mha(q, v, k, attention_mask=mask))


@pytest.mark.parametrize("heads, groups", [(8, 2), (6, 3), (4, 1)], ids=["gqa8x2", "gqa6x3", "mqa"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_general_case_matches_numpy_pooling(rng, heads, groups, use_bias):
    mha, (q, v, k) = _mha(rng, heads, 4, SHAPES["T5xS9-dims16x12x10"], use_bias=use_bias)
    source = mha.get_weights()
    gqa = pygqa.from_multi_head_attention(mha, groups)
    converted = gqa.get_weights()
    assert [w.shape for w in converted] == [w.shape for w in _gqa_shapes(gqa)]
    if use_bias:
        expected = [source[0], source[1], _reference_pool(source[2], groups, 1),
                    _reference_pool(source[3], groups, 0), _reference_pool(source[4], groups, 1),
                    _reference_pool(source[5], groups, 0), source[6], source[7]]
    else:
        expected = [source[0], _reference_pool(source[1], groups, 1),
                    _reference_pool(source[2], groups, 1), source[3]]
    for got, want in zip(converted, expected):
        # float64 means rounded once to float32.
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))
    # The converted layer computes GQA with those weights (float64 reference).
    ref, _ = gqa_reference(expected, q, v, k, causal=True, use_bias=use_bias)
    np.testing.assert_allclose(to_numpy(gqa(q, v, k, use_causal_mask=True)), ref,
                               atol=ATOL, rtol=RTOL)
    # Pooling changes the function: the test above would notice a plain copy.
    assert np.max(np.abs(to_numpy(gqa(q, v, k)) - to_numpy(mha(q, v, k)))) > 1e-3


def _gqa_shapes(layer):
    return [np.empty(w.shape) for w in layer.weights]


@pytest.mark.parametrize("source_kv, target_kv", [(4, 2), (2, 4), (4, 1)],
                         ids=["pool4to2", "repeat2to4", "pool4to1"])
def test_grouped_source_pools_the_heads_its_query_heads_used(rng, source_kv, target_kv):
    q, v, k = inputs(rng, batch=2, target=6, source=5, query_dim=12)
    source = pygqa.GroupQueryAttention(4, 8, source_kv)
    source(q, v, k)
    weights = random_weights(source, rng)
    gqa = pygqa.from_multi_head_attention(source, target_kv)
    # Each query head's key/value head, then the mean over each new group.
    per_query = [np.repeat(weights[i], 8 // source_kv, axis=1 if i in (2, 4) else 0)
                 for i in (2, 3, 4, 5)]
    expected = [_reference_pool(w, target_kv, 1 if i in (0, 2) else 0)
                for i, w in enumerate(per_query)]
    for got, want in zip(gqa.get_weights()[2:6], expected):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    if target_kv > source_kv:  # repeating heads is exact
        _assert_close(gqa(q, v, k), source(q, v, k))


def test_keras_grouped_source_and_mha_with_explicit_output_shape(rng):
    mha, (q, v, k) = _mha(rng, 4, 8, SHAPES["T7"], output_shape=16)
    _assert_close(pygqa.from_multi_head_attention(mha, 4)(q, v, k), mha(q, v, k))
    theirs = keras.layers.GroupQueryAttention(4, 4, 2)
    theirs(q, v, k)
    random_weights(theirs, rng)
    ours = pygqa.from_multi_head_attention(theirs, 2)
    assert isinstance(ours, pygqa.GroupQueryAttention)
    _assert_close(ours(q, v, k), theirs(q, v, k))


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_from_keras_and_to_keras_are_exact(rng, use_bias):
    q, v, k = inputs(rng, batch=2, target=7, source=9, query_dim=16, value_dim=12, key_dim=10)
    theirs = keras.layers.GroupQueryAttention(4, 8, 2, use_bias=use_bias, dropout=0.25,
                                              seed=5, name="keras_gqa")
    theirs(q, v, k)
    weights = random_weights(theirs, rng)
    ours = pygqa.from_keras(theirs)
    assert isinstance(ours, pygqa.GroupQueryAttention)
    assert (ours.name, ours.dropout, ours.seed, ours.use_bias) == ("keras_gqa", 0.25, 5, use_bias)
    back = pygqa.to_keras(ours, name="back")
    assert type(back) is keras.layers.GroupQueryAttention and back.name == "back"
    for layer in (ours, back):
        for got, want in zip(layer.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)
    mask = _masks(rng, 2, 7, 9)
    expected = theirs(q, v, k, attention_mask=mask, use_causal_mask=True)
    _assert_close(ours(q, v, k, attention_mask=mask, use_causal_mask=True), expected)
    _assert_close(back(q, v, k, attention_mask=mask, use_causal_mask=True), expected)


def test_config_is_carried_and_overridable(rng):
    regularizer = keras.regularizers.L2(0.01)
    mha, (q, v, k) = _mha(
        rng, 4, 8, SHAPES["T7"], dropout=0.1, seed=3, dtype="mixed_bfloat16",
        kernel_initializer=keras.initializers.HeNormal(seed=2), kernel_regularizer=regularizer,
        bias_constraint=keras.constraints.NonNeg(), name="mha",
    )
    mha.trainable = False
    gqa = pygqa.from_multi_head_attention(mha, 2)
    assert (gqa.dropout, gqa.seed, gqa.trainable) == (0.1, 3, False)
    assert gqa.dtype_policy.name == "mixed_bfloat16" and gqa.variable_dtype == "float32"
    assert isinstance(gqa.kernel_initializer, keras.initializers.HeNormal)
    assert gqa.kernel_initializer.seed == 2
    assert gqa.kernel_regularizer.get_config() == regularizer.get_config()
    assert isinstance(gqa.bias_constraint, keras.constraints.NonNeg)
    assert gqa.name != "mha"  # a new kind of layer gets its own name
    assert gqa.losses == []  # frozen: no regularization losses
    named = pygqa.from_multi_head_attention(mha, 2, name="gqa", dropout=0.0, trainable=True)
    assert (named.name, named.dropout, named.trainable) == ("gqa", 0.0, True)
    # One loss per kernel, from the carried regularizer.
    assert len(named.losses) == 4


def test_converted_layer_owns_its_weights(rng):
    mha, (q, v, k) = _mha(rng, 4, 8, SHAPES["T7"])
    before = mha.get_weights()
    gqa = pygqa.from_multi_head_attention(mha, 2)
    gqa.set_weights([np.zeros_like(w) for w in gqa.get_weights()])
    for got, want in zip(mha.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    ours = pygqa.from_keras(pygqa.to_keras(gqa))
    assert all(not np.any(w) for w in ours.get_weights())


def _error(kind, rng):
    """Builds the bad call `kind`, returns a zero-argument callable."""
    mha, _ = _mha(rng, 4, 8, SHAPES["T7"])
    if kind == "unbuilt":
        return lambda: pygqa.from_multi_head_attention(keras.layers.MultiHeadAttention(4, 8), 2)
    if kind == "unbuilt-to_keras":
        return lambda: pygqa.to_keras(pygqa.GroupQueryAttention(4, 4, 2))
    if kind == "not-a-layer":
        return lambda: pygqa.from_multi_head_attention(keras.layers.Dense(3), 2)
    if kind == "from_keras-of-pygqa":
        return lambda: pygqa.from_keras(pygqa.from_multi_head_attention(mha, 2))
    if kind == "to_keras-of-mha":
        return lambda: pygqa.to_keras(mha)
    if kind == "not-dividing":
        return lambda: pygqa.from_multi_head_attention(mha, 3)
    if kind == "not-an-integer":
        return lambda: pygqa.from_multi_head_attention(mha, "2")
    if kind == "fixed-by-weights":
        return lambda: pygqa.from_multi_head_attention(mha, 2, head_dim=4)
    if kind == "key_dim-value_dim":
        bad, _ = _mha(rng, 4, 8, SHAPES["T7"], value_dim=4)
        return lambda: pygqa.from_multi_head_attention(bad, 2)
    if kind == "output_shape":
        bad, _ = _mha(rng, 4, 8, SHAPES["T7"], output_shape=6)
        return lambda: pygqa.from_multi_head_attention(bad, 2)
    if kind == "rank4":
        bad = keras.layers.MultiHeadAttention(2, 4)
        bad.build((1, 3, 3, 8), (1, 3, 3, 8))
        return lambda: pygqa.from_multi_head_attention(bad, 1)
    raise AssertionError(kind)


ERRORS = {
    "unbuilt": (ValueError, r"`layer`: expected a built layer.*Received: layer=<MultiHeadAtt"),
    "unbuilt-to_keras": (ValueError, r"`layer`: expected a built layer.*built=False"),
    "not-a-layer": (TypeError, r"`layer`: expected a built keras.layers.MultiHeadAttention or "
                               r"GroupQueryAttention layer. Received: layer=<Dense"),
    "from_keras-of-pygqa": (TypeError, r"expected a built keras.layers.GroupQueryAttention\. "
                                       r"Received: layer=<GroupQueryAttention"),
    "to_keras-of-mha": (TypeError, r"expected a built pygqa.GroupQueryAttention\. "
                                   r"Received: layer=<MultiHeadAttention"),
    "not-dividing": (ValueError, r"`num_key_value_heads`: expected a positive integer that "
                                 r"divides the 4 query heads of `layer`\. "
                                 r"Received: num_key_value_heads=3"),
    "not-an-integer": (TypeError, r"`num_key_value_heads`: expected a positive integer\. "
                                  r"Received: num_key_value_heads='2'"),
    "fixed-by-weights": (TypeError, r"Received invalid keyword argument\(s\): head_dim\..*"
                                    r"Received: head_dim=4"),
    "key_dim-value_dim": (ValueError, r"`key_dim == value_dim`.*Received: key_dim=8, "
                                      r"value_dim=4"),
    "output_shape": (ValueError, r"output has the query's feature size.*output_shape=\(6,\) "
                                 r"for a query with 16 features"),
    "rank4": (ValueError, r"inputs of shape \(batch, sequence, features\).*rank 4 with "
                          r"attention_axes=\(1, 2\)"),
}


@pytest.mark.parametrize("kind", ERRORS, ids=list(ERRORS))
def test_errors_name_the_argument_and_the_value(rng, kind):
    error, pattern = ERRORS[kind]
    call = _error(kind, rng)
    with pytest.raises(error, match=pattern):
        call()
