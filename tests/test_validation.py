"""Every bad argument gets a TypeError/ValueError that names it and shows the value."""

import re

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
    ("unknown-kwarg", dict(sliding_window=4), TypeError, "unknown keyword.*sliding_window=4"),
    ("unknown-kwargs", dict(foo=1, bar=2), TypeError, "bar, foo"),
    ("bad-initializer", dict(kernel_initializer="nope"), ValueError, "nope"),
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


CALL_ERRORS = [
    ("query-rank2", dict(query=_x(2, 8)), "`query`.*rank 3.*query.shape=\\(2, 8\\)"),
    ("value-rank4", dict(value=_x(2, 5, 8, 1)), "`value`.*rank 3"),
    ("key-value-length", dict(key=_x(2, 6, 8)), "`key` and `value`.*key.shape=\\(2, 6, 8\\)"),
    ("key-value-batch", dict(key=_x(3, 5, 8)), "`key` and `value`"),
    ("query-value-batch", dict(value=_x(3, 5, 8), key=_x(3, 5, 8)), "`query` and `value`"),
    ("empty-sequence", dict(query=_x(2, 0, 8)), "non-empty.*query.shape=\\(2, 0, 8\\)"),
    ("query_mask-shape", dict(query_mask=np.ones((2, 5), bool)), "`query_mask`.*\\(2, 7\\)"),
    ("value_mask-shape", dict(value_mask=np.ones((2, 7), bool)), "`value_mask`.*\\(2, 5\\)"),
    ("key_mask-rank", dict(key_mask=np.ones((2, 5, 1), bool)), "`key_mask`"),
    ("attention_mask-shape", dict(attention_mask=np.ones((2, 5, 7), bool)),
     "`attention_mask`.*\\(2, 7, 5\\).*\\(2, 5, 7\\)"),
]


@pytest.mark.parametrize("override, message", [c[1:] for c in CALL_ERRORS],
                         ids=[c[0] for c in CALL_ERRORS])
def test_call_rejects(override, message):
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    args = dict(query=_x(2, 7, 8), value=_x(2, 5, 8), key=_x(2, 5, 8))
    with pytest.raises(ValueError, match=message):
        layer(**{**args, **override})


def test_call_after_build_rejects_other_feature_dims():
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    layer(_x(1, 3, 8))
    with pytest.raises(ValueError, match=re.escape("built for 8 features in `query`")):
        layer(_x(1, 3, 6))


def test_symbolic_and_eager_calls_accept_the_same_feature_dims():
    import keras

    query, value = keras.Input((7, 16)), keras.Input((5, 24))
    out = pygqa.GroupQueryAttention(4, 4, 2)(query, value)
    assert tuple(out.shape) == (None, 7, 16)
    eager = pygqa.GroupQueryAttention(4, 4, 2)(_x(2, 7, 16), _x(2, 5, 24))
    assert tuple(eager.shape) == (2, 7, 16)
