"""Every bad argument gets a TypeError/ValueError that names it and shows the value."""

import re

import keras
import numpy as np
import pytest

import pygqa

GOOD = dict(head_dim=4, num_query_heads=4, num_key_value_heads=2)

CONSTRUCTOR_ERRORS = [
    ("head_dim-float", dict(head_dim=4.5), ValueError, "`head_dim`.*head_dim=4.5"),
    ("head_dim-zero", dict(head_dim=0), ValueError, "`head_dim`.*head_dim=0"),
    ("head_dim-negative", dict(head_dim=-1), ValueError, "`head_dim`.*head_dim=-1"),
    ("head_dim-string", dict(head_dim="4"), TypeError, "`head_dim`.*head_dim='4'"),
    ("head_dim-bool", dict(head_dim=True), TypeError, "`head_dim`.*head_dim=True"),
    ("head_dim-none", dict(head_dim=None), TypeError, "`head_dim`.*head_dim=None"),
    ("head_dim-nan", dict(head_dim=float("nan")), ValueError, "`head_dim`.*head_dim=nan"),
    ("query_heads-float", dict(num_query_heads=2.5), ValueError, "num_query_heads=2.5"),
    ("query_heads-zero", dict(num_query_heads=0), ValueError, "num_query_heads=0"),
    ("kv_heads-list", dict(num_key_value_heads=[2]), TypeError, r"num_key_value_heads=\[2\]"),
    ("kv_heads-negative", dict(num_key_value_heads=-2), ValueError, "num_key_value_heads=-2"),
    ("not-divisible", dict(num_query_heads=6, num_key_value_heads=4), ValueError,
     "divides `num_query_heads`.*num_query_heads=6, num_key_value_heads=4"),
    ("dropout-one", dict(dropout=1.0), ValueError, r"`dropout`.*\[0, 1\).*dropout=1.0"),
    ("dropout-negative", dict(dropout=-0.1), ValueError, "dropout=-0.1"),
    ("dropout-string", dict(dropout="0.1"), TypeError, "dropout='0.1'"),
    ("use_bias-string", dict(use_bias="yes"), TypeError, "`use_bias`.*use_bias='yes'"),
    ("seed-float", dict(seed=1.5), ValueError, "`seed`.*seed=1.5"),
    ("seed-negative", dict(seed=-3), ValueError, "seed=-3"),
    ("seed-string", dict(seed="1"), TypeError, "seed='1'"),
    ("unknown-kwarg", dict(window=4), TypeError, "unknown keyword.*window=4"),
    ("sliding_window-zero", dict(sliding_window=0), ValueError,
     "`sliding_window`: expected None or a positive integer.*sliding_window=0"),
    ("sliding_window-float", dict(sliding_window=2.5), ValueError, "sliding_window=2.5"),
    ("sliding_window-string", dict(sliding_window="4"), TypeError, "sliding_window='4'"),
    ("use_gate-string", dict(use_gate="yes"), TypeError, "`use_gate`.*use_gate='yes'"),
    ("use_gate-none", dict(use_gate=None), TypeError, "`use_gate`.*use_gate=None"),
    ("unknown-kwargs", dict(foo=1, bar=2), TypeError, "bar, foo"),
    ("bad-initializer", dict(kernel_initializer="nope"), ValueError, "nope"),
    ("head_dim-inf", dict(head_dim=float("inf")), ValueError, "`head_dim`.*head_dim=inf"),
    ("query_heads-none", dict(num_query_heads=None), TypeError, "num_query_heads=None"),
    ("query_heads-string", dict(num_query_heads="4"), TypeError, "num_query_heads='4'"),
    ("kv_heads-none", dict(num_key_value_heads=None), TypeError, "num_key_value_heads=None"),
    ("kv_heads-float", dict(num_key_value_heads=1.5), ValueError, "num_key_value_heads=1.5"),
    ("dropout-none", dict(dropout=None), TypeError, "`dropout`.*dropout=None"),
    ("dropout-nan", dict(dropout=float("nan")), ValueError, "`dropout`.*dropout=nan"),
    ("use_bias-none", dict(use_bias=None), TypeError, "`use_bias`.*use_bias=None"),
    ("use_bias-int", dict(use_bias=1), TypeError, "`use_bias`.*use_bias=1"),
    ("seed-bool", dict(seed=True), TypeError, "`seed`.*seed=True"),
    ("seed-nan", dict(seed=float("nan")), ValueError, "`seed`.*seed=nan"),
    ("flash_attention-string", dict(flash_attention="yes"), TypeError,
     "`flash_attention`.*None, True or False.*flash_attention='yes'"),
    ("flash_attention-int", dict(flash_attention=1), TypeError,
     "`flash_attention`.*flash_attention=1"),
]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [case[1:] for case in CONSTRUCTOR_ERRORS],
    ids=[case[0] for case in CONSTRUCTOR_ERRORS],
)
def test_constructor_rejects(kwargs, error, message):
    with pytest.raises(error, match=message):
        pygqa.GroupQueryAttention(**{**GOOD, **kwargs})


@pytest.mark.parametrize("value", [4, 4.0, np.int64(4), np.float32(4.0)],
                         ids=["int", "float", "np-int", "np-float"])
def test_integral_numbers_are_accepted_and_stored_as_int(value):
    layer = pygqa.GroupQueryAttention(value, value, value)
    assert (layer.head_dim, layer.num_query_heads, layer.num_key_value_heads) == (4, 4, 4)
    assert all(type(x) is int for x in (layer.head_dim, layer.num_key_value_heads))


def _x(*shape):
    return np.zeros(shape, dtype="float32")


V = ValueError
T = TypeError
CALL_ERRORS = [
    ("query-rank2", dict(query=_x(2, 8)), V, "`query`.*rank 3.*query.shape=\\(2, 8\\)"),
    ("value-rank4", dict(value=_x(2, 5, 8, 1)), V, "`value`.*rank 3"),
    ("key-value-length", dict(key=_x(2, 6, 8)), V, "`key` and `value`.*key.shape=\\(2, 6, 8\\)"),
    ("key-value-batch", dict(key=_x(3, 5, 8)), V, "`key` and `value`"),
    ("query-value-batch", dict(value=_x(3, 5, 8), key=_x(3, 5, 8)), V, "`query` and `value`"),
    ("empty-sequence", dict(query=_x(2, 0, 8)), V, "non-empty.*query.shape=\\(2, 0, 8\\)"),
    ("empty-batch", dict(query=_x(0, 7, 8), value=_x(0, 5, 8), key=_x(0, 5, 8)), V,
     "non-empty batch.*query.shape=\\(0, 7, 8\\)"),
    ("empty-features", dict(value=_x(2, 5, 0), key=_x(2, 5, 0)), V, "value.shape=\\(2, 5, 0\\)"),
    ("empty-array", dict(query=_x(0)), V, "`query`.*rank 3.*query.shape=\\(0,\\)"),
    ("query-none", dict(query=None), T, "`query`.*query=None of type NoneType"),
    ("query-string", dict(query="abc"), T, "`query`.*floating-point.*query='abc' of type str"),
    ("query-integer", dict(query=_x(2, 7, 8).astype("int32")), T,
     "`query`.*floating-point.*query.dtype=int32"),
    ("value-bool", dict(value=_x(2, 5, 8).astype(bool)), T, "`value`.*value.dtype=bool"),
    ("key-complex", dict(key=_x(2, 5, 8).astype("complex64")), T, "`key`.*key.dtype=complex64"),
    ("query_mask-shape", dict(query_mask=np.ones((2, 5), bool)), V, "`query_mask`.*\\(2, 7\\)"),
    ("value_mask-shape", dict(value_mask=np.ones((2, 7), bool)), V, "`value_mask`.*\\(2, 5\\)"),
    ("key_mask-rank", dict(key_mask=np.ones((2, 5, 1), bool)), V, "`key_mask`"),
    ("attention_mask-shape", dict(attention_mask=np.ones((2, 5, 7), bool)), V,
     "`attention_mask`.*\\(2, 7, 5\\).*\\(2, 5, 7\\)"),
    ("attention_mask-float", dict(attention_mask=np.ones((2, 7, 5), "float32")), T,
     "`attention_mask`.*boolean.*attention_mask.dtype=float32"),
    ("key_mask-float64", dict(key_mask=np.zeros((2, 5))), T, "`key_mask`.*key_mask.dtype=float"),
    ("query_mask-list", dict(query_mask=[[True] * 7] * 2), T, "`query_mask`.*of type list"),
    ("value_mask-string", dict(value_mask="yes"), T, "`value_mask`.*value_mask='yes' of type str"),
    ("unknown-call-keyword", dict(foo=1), T, "unexpected keyword argument 'foo'"),
]


# Call flags must be booleans: a string such as "no" is truthy in Python.
FLAG_ERRORS = [
    ("use_causal_mask-string", dict(use_causal_mask="yes"), T,
     "`use_causal_mask`.*True or False.*use_causal_mask='yes'"),
    ("return_attention_scores-string", dict(return_attention_scores="no"), T,
     "`return_attention_scores`.*return_attention_scores='no'"),
    ("use_causal_mask-none", dict(use_causal_mask=None), T, "use_causal_mask=None"),
]
CALL_ERRORS += FLAG_ERRORS

# Rows that need weights of another size than the call's inputs (none so far).
NEEDS_BUILT = set()
CALL_CASES = [pytest.param(*c[1:], built, id=f"{c[0]}-{'built' if built else 'fresh'}")
              for c in CALL_ERRORS for built in (False, True)
              if built or c[0] not in NEEDS_BUILT]


@pytest.mark.parametrize("override, error, message, built", CALL_CASES)
def test_call_rejects(override, error, message, built):
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    args = dict(query=_x(2, 7, 8), value=_x(2, 5, 8), key=_x(2, 5, 8))
    if built:
        layer(**args)
    with pytest.raises(error, match=message):
        layer(**{**args, **override})


def test_the_bad_input_table_has_at_least_30_entries():
    assert len(CONSTRUCTOR_ERRORS) + len(CALL_ERRORS) >= 30


@pytest.mark.parametrize("dtype", ["int32", "uint8", "int64"])
def test_integer_masks_mean_nonzero_is_attend(dtype, rng):
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    q = rng.normal(size=(2, 7, 8)).astype("float32")
    v = rng.normal(size=(2, 5, 8)).astype("float32")
    layer(q, v)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    mask = rng.random((2, 7, 5)) < 0.5
    mask[0, 0] = False
    as_bool = keras.ops.convert_to_numpy(layer(q, v, attention_mask=mask))
    as_int = keras.ops.convert_to_numpy(layer(q, v, attention_mask=(mask * 3).astype(dtype)))
    np.testing.assert_array_equal(as_int, as_bool)
    all_true = keras.ops.convert_to_numpy(layer(q, v))
    assert not np.allclose(as_bool, all_true)  # the mask did something


def test_call_after_build_rejects_other_feature_dims():
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    layer(_x(1, 3, 8))
    with pytest.raises(ValueError, match=re.escape("built for 8 features in `query`")):
        layer(_x(1, 3, 6))


def test_symbolic_and_eager_calls_accept_the_same_feature_dims():
    query, value = keras.Input((7, 16)), keras.Input((5, 24))
    out = pygqa.GroupQueryAttention(4, 4, 2)(query, value)
    assert tuple(out.shape) == (None, 7, 16)
    eager = pygqa.GroupQueryAttention(4, 4, 2)(_x(2, 7, 16), _x(2, 5, 24))
    assert tuple(eager.shape) == (2, 7, 16)


@pytest.mark.parametrize("argument", ["head_dim", "num_query_heads"])
def test_sizes_beyond_memory_are_refused_at_build_naming_the_argument(argument):
    layer = pygqa.GroupQueryAttention(**{**GOOD, argument: 10**9})  # constructing is fine
    with pytest.raises(ValueError, match=f"`{argument}`.*would need .* GiB.*{argument}=1000000000"):
        layer(np.zeros((1, 3, 8), "float32"))
    assert not layer.built


def test_memory_check_counts_every_weight_at_the_variable_dtype():
    from pygqa import validation

    sizes = dict(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    dims = dict(query=8, value=6, key=5)
    # kernels 8*4*4 + 5*2*4 + 6*2*4 + 4*4*8 = 344, biases 16 + 16 + 8 = 40 elements
    validation.weights_fit_in_memory(sizes, dims, True, "float32", memory_bytes=384 * 4)
    with pytest.raises(ValueError, match="`head_dim`: .* would need 1.5 KiB .* 1.5 KiB"):
        validation.weights_fit_in_memory(sizes, dims, True, "float32", memory_bytes=384 * 4 - 1)
    with pytest.raises(ValueError, match="would need 1.5 KiB .* 1,000 bytes of memory"):
        validation.weights_fit_in_memory(sizes, dims, True, "float32", memory_bytes=1000)
    validation.weights_fit_in_memory(sizes, dims, False, "float32", memory_bytes=344 * 4)
    validation.weights_fit_in_memory(sizes, dims, True, "bfloat16", memory_bytes=384 * 2)
