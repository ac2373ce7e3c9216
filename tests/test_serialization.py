"""Config round trips, .keras files and weights files."""

import inspect

import keras
import numpy as np
from helpers import to_numpy

import pygqa


def test_config_holds_every_constructor_argument():
    layer = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.25, use_bias=False, seed=7,
                                      kernel_regularizer="l2", name="g")
    config = layer.get_config()
    names = [p for p in inspect.signature(pygqa.GroupQueryAttention).parameters if p != "kwargs"]
    assert set(names) <= set(config)
    assert config["seed"] == 7 and config["dropout"] == 0.25 and config["use_bias"] is False
    clone = pygqa.GroupQueryAttention.from_config(config)
    assert clone.get_config() == config


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, pygqa.GroupQueryAttention(4, 4, 2, seed=3)(inputs))
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[-1], pygqa.GroupQueryAttention)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_weights_file_round_trip(tmp_path):
    x = np.random.default_rng(1).normal(size=(1, 5, 8)).astype("float32")
    first, second = pygqa.GroupQueryAttention(4, 8, 2), pygqa.GroupQueryAttention(4, 8, 2)
    model_a = keras.Sequential([keras.Input((5, 8)), first])
    model_b = keras.Sequential([keras.Input((5, 8)), second])
    path = tmp_path / "gqa.weights.h5"
    model_a.save_weights(path)
    model_b.load_weights(path)
    np.testing.assert_array_equal(to_numpy(second(x)), to_numpy(first(x)))


def test_weight_layout_matches_keras():
    x = np.zeros((1, 3, 12), "float32")
    ours, theirs = pygqa.GroupQueryAttention(5, 6, 3), keras.layers.GroupQueryAttention(5, 6, 3)
    ours(x), theirs(x, x)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [
        w.path.split("/", 1)[1] for w in theirs.weights
    ]


def test_seed_makes_initial_weights_reproducible_and_distinct():
    x = np.zeros((1, 3, 8), "float32")
    a, b = pygqa.GroupQueryAttention(4, 2, 2, seed=11), pygqa.GroupQueryAttention(4, 2, 2, seed=11)
    a(x), b(x)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    query_kernel, key_kernel, value_kernel = (a.get_weights()[i] for i in (0, 2, 4))
    assert not np.array_equal(query_kernel, key_kernel)
    assert not np.array_equal(key_kernel, value_kernel)


def test_seeded_initializer_gives_distinct_kernels():
    init = keras.initializers.GlorotUniform(seed=5)
    layer = pygqa.GroupQueryAttention(4, 2, 2, kernel_initializer=init)
    layer(np.zeros((1, 3, 8), "float32"))
    weights = layer.get_weights()
    assert not np.array_equal(weights[0], weights[2])
    assert layer.get_config()["kernel_initializer"]["config"]["seed"] == 5


def test_output_shape_and_spec_for_functional_models():
    query, value = keras.Input((7, 16)), keras.Input((9, 12))
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    out, scores = layer(query, value, return_attention_scores=True)
    assert tuple(out.shape) == (None, 7, 16)
    assert tuple(scores.shape) == (None, 4, 7, 9)
    assert layer.compute_output_shape((None, 7, 16), (None, 9, 12)) == (None, 7, 16)
