"""Reproducible initialisation and files that move between R and Python."""

import keras
import numpy as np
import pytest
from xlang import ATOL, max_abs_diff, record

import pygqa


def _unit(seed, *shape):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=shape).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("heads, head_dim, use_bias", [((8, 2), 4, True), ((4, 1), 3, False)],
                         ids=["gqa-bias", "mqa-nobias"])
def test_set_random_seed_gives_identical_initial_weights(r, heads, head_dim, use_bias):
    """R's set_random_seed(42) and Python's keras.utils.set_random_seed(42) agree."""
    q, v = _unit(1, 2, 5, 12), _unit(2, 2, 9, 6)
    r_args = dict(head_dim=float(head_dim), num_query_heads=float(heads[0]),
                  num_key_value_heads=float(heads[1]), use_bias=use_bias,
                  bias_initializer="random_uniform")
    from_r = r.fn("seeded_init")(42.0, r_args, q, v)

    keras.utils.set_random_seed(42)
    layer = pygqa.GroupQueryAttention(head_dim, *heads, use_bias=use_bias,
                                      bias_initializer="random_uniform")
    out = keras.ops.convert_to_numpy(layer(q.astype(np.float32), v.astype(np.float32)))
    weights = layer.get_weights()
    assert len(from_r["weights"]) == len(weights)
    for a, b in zip(from_r["weights"], weights):
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)
    assert record(max_abs_diff(from_r["output"], out), "set_random_seed output") == 0.0
    # A different seed gives different weights: the test is not vacuous.
    other = r.fn("seeded_init")(43.0, r_args, q, v)
    assert not np.array_equal(np.asarray(other["weights"][0], np.float32), weights[0])


def test_seeded_dropout_agrees(r):
    """seed= also seeds dropout: training-mode outputs agree between the languages."""
    q = _unit(3, 2, 6, 8)
    out_r = r.fn("dropout_call")(q)
    layer = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.5, seed=9)
    out_py = keras.ops.convert_to_numpy(layer(q.astype(np.float32), training=True))
    assert record(max_abs_diff(out_r, out_py), "seeded dropout") <= ATOL
    assert not np.allclose(out_py, keras.ops.convert_to_numpy(layer(q.astype(np.float32))))


SHAPE = (7, 10)
LAYER_ARGS = dict(head_dim=5, num_query_heads=6, num_key_value_heads=2)


def _py_model():
    model = keras.Sequential([keras.Input(SHAPE)])
    model.add(pygqa.GroupQueryAttention(**LAYER_ARGS))
    return model


def _r_args():
    return {k: float(v) for k, v in LAYER_ARGS.items()}


@pytest.mark.parametrize("what", ["model", "weights"])
def test_saved_in_r_loads_in_python(r, tmp_path, what):
    x = _unit(4, 3, *SHAPE)
    path = str(tmp_path / ("m.keras" if what == "model" else "m.weights.h5"))
    out_r = r.fn("save_model_r")(path, _r_args(), [float(d) for d in SHAPE], x, what)
    if what == "model":
        model = keras.saving.load_model(path)
        assert isinstance(model.layers[0], pygqa.GroupQueryAttention)
    else:
        model = _py_model()
        model.load_weights(path)
    out_py = keras.ops.convert_to_numpy(model(x.astype(np.float32)))
    assert record(max_abs_diff(out_r, out_py), f"file from R ({what})") == 0.0
    assert np.abs(out_py).max() > 0.1  # the saved weights were not the zero biases alone


@pytest.mark.parametrize("what", ["model", "weights"])
def test_saved_in_python_loads_in_r(r, tmp_path, what):
    x = _unit(5, 2, *SHAPE)
    model = _py_model()
    rng = np.random.default_rng(8)
    model.set_weights([rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    path = str(tmp_path / ("m.keras" if what == "model" else "m.weights.h5"))
    model.save(path) if what == "model" else model.save_weights(path)
    out_py = keras.ops.convert_to_numpy(model(x.astype(np.float32)))
    from_r = r.fn("load_model_r")(path, _r_args(), [float(d) for d in SHAPE], x, what)
    assert from_r["class"].endswith("GroupQueryAttention")
    assert record(max_abs_diff(from_r["output"], out_py), f"file from Python ({what})") == 0.0


# --- bit-identical weights and version checks across the languages -------------------------
# R holds float32 values as doubles exactly, and numpy's float32 cast of those
# doubles is exact, so comparing float32 bytes after the crossing is exact too.


def _float32_bytes(weights):
    return [np.asarray(w, dtype=np.float32).tobytes() for w in weights]


def test_file_from_r_loads_bit_identical_in_python(r, tmp_path):
    path = str(tmp_path / "from_r.keras")
    r_weights = r.fn("save_weights_file_r")(path, _r_args(), [float(d) for d in SHAPE])
    for load in (keras.saving.load_model, pygqa.load_model):
        loaded = load(path).get_weights()
        assert [w.dtype for w in loaded] == [np.float32] * 8
        assert [w.tobytes() for w in loaded] == _float32_bytes(r_weights)


def test_file_from_python_loads_bit_identical_in_r(r, tmp_path):
    model = _py_model()
    rng = np.random.default_rng(21)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    path = str(tmp_path / "from_python.keras")
    model.save(path)
    from_r = r.fn("load_weights_file_r")(path)
    assert _float32_bytes(from_r) == [w.tobytes() for w in model.get_weights()]


def test_file_from_another_version_is_refused_with_the_same_message(r, tmp_path):
    import json
    import zipfile

    path = tmp_path / "model.keras"
    _py_model().save(path)
    major, minor = pygqa.__version__.split(".")[:2]
    newer = f"{major}.{int(minor) + 1}.0"
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if "pygqa_version" in layer["config"]:
            layer["config"]["pygqa_version"] = newer
    members["config.json"] = json.dumps(config).encode()
    newer_path = str(tmp_path / "newer.keras")
    with zipfile.ZipFile(newer_path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError) as raised:
        pygqa.load_model(newer_path)
    from_r = r.fn("load_error_r")(newer_path)
    assert "pygqa_error" in list(np.atleast_1d(from_r["classes"]))
    assert from_r["message"] == str(raised.value)
    assert f"pygqa_version='{newer}'" in from_r["message"]
