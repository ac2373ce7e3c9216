"""layer_group_query_attention(): keras3's composition rule, case by case."""

import inspect

import keras
import numpy as np
import pytest
from helpers import ATOL, to_numpy

import pygqa
from pygqa import layer_group_query_attention


def test_missing_object_gives_a_configured_layer():
    layer = layer_group_query_attention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                                        dropout=0.1, name="gqa")
    assert isinstance(layer, pygqa.GroupQueryAttention)
    assert (layer.head_dim, layer.num_query_heads, layer.num_key_value_heads) == (4, 4, 2)
    assert layer.dropout == 0.1 and layer.name == "gqa"


def test_positional_order_matches_the_reference_page():
    x = np.ones((2, 7, 16), "float32")
    assert tuple(layer_group_query_attention(x, 16, 8, 2).shape) == (2, 7, 16)
    names = list(inspect.signature(layer_group_query_attention).parameters)
    assert names[:4] == ["object", "head_dim", "num_query_heads", "num_key_value_heads"]


def test_missing_required_arguments_are_named():
    with pytest.raises(TypeError, match="`num_query_heads`, `num_key_value_heads`"):
        layer_group_query_attention(None, 4)


def test_sequential_model_gets_the_layer_added():
    model = keras.Sequential([keras.Input((6, 8))])
    returned = layer_group_query_attention(model, 4, 4, 2)
    assert returned is model
    assert isinstance(model.layers[-1], pygqa.GroupQueryAttention)
    assert tuple(model.output_shape) == (None, 6, 8)
    x = np.random.default_rng(0).normal(size=(3, 6, 8)).astype("float32")
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(model.layers[-1](x)), atol=ATOL)


def test_sequential_pipeline_with_embedding_mask():
    model = keras.Sequential([keras.Input((5,), dtype="int32"),
                              keras.layers.Embedding(10, 8, mask_zero=True)])
    layer_group_query_attention(model, 4, 4, 1)
    tokens = np.array([[1, 2, 3, 0, 0]], "int32")
    out = model(tokens)
    assert tuple(out.shape) == (1, 5, 8)
    assert np.isfinite(to_numpy(out)).all()


def test_tensor_gives_the_self_attention_output():
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    expected = to_numpy(layer(x, x))
    from pygqa.compose import compose
    np.testing.assert_allclose(to_numpy(compose(layer, x)), expected, atol=ATOL)
    np.testing.assert_allclose(to_numpy(compose(layer, keras.ops.convert_to_tensor(x))),
                               expected, atol=ATOL)


def test_symbolic_tensor_builds_a_functional_model():
    inputs = keras.Input((7, 16))
    outputs = layer_group_query_attention(inputs, 8, 4, 2)
    model = keras.Model(inputs, outputs)
    assert tuple(model.output_shape) == (None, 7, 16)


def test_list_and_dict_are_call_arguments():
    rng = np.random.default_rng(2)
    q, v = rng.normal(size=(2, 5, 8)).astype("float32"), rng.normal(size=(2, 3, 6)).astype(
        "float32")
    from pygqa.compose import compose
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    expected = to_numpy(layer(q, v, v, use_causal_mask=True))
    np.testing.assert_allclose(to_numpy(compose(layer, [q, v])), to_numpy(layer(q, v)),
                               atol=ATOL)
    np.testing.assert_allclose(to_numpy(compose(layer, (q, v, v))), to_numpy(layer(q, v)),
                               atol=ATOL)
    got = compose(layer, dict(query=q, value=v, use_causal_mask=True))
    np.testing.assert_allclose(to_numpy(got), expected, atol=ATOL)
    out, scores = compose(layer, dict(query=q, value=v, return_attention_scores=True))
    assert tuple(scores.shape) == (2, 4, 5, 3)


@pytest.mark.parametrize("bad", ["text", 3, [], [1, 2, 3, 4]], ids=["str", "int", "empty", "4"])
def test_other_objects_are_rejected(bad):
    with pytest.raises(TypeError, match="`object`"):
        layer_group_query_attention(bad, 4, 4, 2)


def test_functional_model_is_rejected():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match="`object`.*functional"):
        layer_group_query_attention(model, 4, 4, 2)
