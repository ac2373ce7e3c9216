"""Config round trips, .keras files and weights files."""

import inspect
import json
import re
import zipfile

import keras
import numpy as np
import pytest
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


# --- integrity: bit-identical weights, versions, damaged files ---------------------------


def _model_with_random_weights(kind, seed=0, use_bias=True):
    """A small model around a pygqa layer, every weight random (so zeros cannot hide a loss)."""
    rng = np.random.default_rng(seed)
    layer = pygqa.GroupQueryAttention(3, 6, 2, use_bias=use_bias, name="gqa")
    if kind == "sequential":
        model = keras.Sequential([keras.Input((5, 7)), layer, keras.layers.Dense(2)])
    else:  # functional cross-attention with two inputs
        query, value = keras.Input((5, 7)), keras.Input((4, 9))
        model = keras.Model([query, value], layer(query, value))
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _weight_bytes(model):
    return [(w.dtype.str, w.shape, w.tobytes()) for w in model.get_weights()]


@pytest.mark.parametrize("kind", ["sequential", "functional"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("loader", ["keras", "pygqa"])
def test_saved_weights_come_back_bit_identical(kind, use_bias, loader, tmp_path):
    model = _model_with_random_weights(kind, use_bias=use_bias)
    path = tmp_path / "model.keras"
    model.save(path)
    load = keras.saving.load_model if loader == "keras" else pygqa.load_model
    loaded = load(path)
    assert _weight_bytes(loaded) == _weight_bytes(model)
    assert len(loaded.get_weights()) == len(model.get_weights())
    # And a second round trip of the loaded model changes nothing either.
    loaded.save(tmp_path / "again.keras")
    assert _weight_bytes(load(tmp_path / "again.keras")) == _weight_bytes(model)


def test_weights_file_is_bit_identical(tmp_path):
    a, b = _model_with_random_weights("sequential", 1), _model_with_random_weights("sequential", 2)
    assert _weight_bytes(a) != _weight_bytes(b)
    a.save_weights(tmp_path / "m.weights.h5")
    b.load_weights(tmp_path / "m.weights.h5")
    assert _weight_bytes(b) == _weight_bytes(a)


def test_config_records_the_installed_version():
    config = pygqa.GroupQueryAttention(4, 4, 2).get_config()
    assert config["pygqa_version"] == pygqa.__version__


def _other_minor(version):
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}.0"


def test_from_config_checks_the_recorded_version():
    config = pygqa.GroupQueryAttention(4, 4, 2).get_config()
    major_minor = ".".join(pygqa.__version__.split(".")[:2])
    # Same major.minor (another patch release) and no recorded version: accepted.
    for accepted in (f"{major_minor}.99", None):
        old = {k: v for k, v in config.items() if k != "pygqa_version"}
        if accepted is not None:
            old["pygqa_version"] = accepted
        assert pygqa.GroupQueryAttention.from_config(old).get_config() == config
    newer = _other_minor(pygqa.__version__)
    with pytest.raises(ValueError, match=re.escape(f"pygqa_version='{newer}'")) as raised:
        pygqa.GroupQueryAttention.from_config({**config, "pygqa_version": newer})
    message = str(raised.value)
    assert f"pygqa {major_minor}.x" in message and pygqa.__version__ in message
    assert f"pip install 'pygqa=={newer.rsplit('.', 1)[0]}.*'" in message
    with pytest.raises(ValueError, match="expected a version string.*pygqa_version=42"):
        pygqa.GroupQueryAttention.from_config({**config, "pygqa_version": 42})


def _rewrite_archive(source, target, edit):
    """Copies a .keras zip, passing each member's bytes through edit(name, data)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, edit(name, data))


def _with_version(version):
    def edit(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        for layer in config["config"]["layers"]:
            if "pygqa_version" in layer["config"]:
                layer["config"]["pygqa_version"] = version
        return json.dumps(config).encode()

    return edit


@pytest.mark.parametrize("kind", ["sequential", "functional"])
@pytest.mark.parametrize("loader", ["keras", "pygqa"])
def test_a_file_from_another_minor_version_is_refused(kind, loader, tmp_path):
    model = _model_with_random_weights(kind)
    model.save(tmp_path / "model.keras")
    newer = _other_minor(pygqa.__version__)
    _rewrite_archive(tmp_path / "model.keras", tmp_path / "newer.keras", _with_version(newer))
    load = keras.saving.load_model if loader == "keras" else pygqa.load_model
    # Keras passes from_config's ValueError through unchanged: users see our words.
    with pytest.raises(ValueError, match=re.escape(f"pygqa_version='{newer}'")) as raised:
        load(tmp_path / "newer.keras")
    assert pygqa.__version__ in str(raised.value)


def _truncate(name, data):
    return data[: len(data) // 2] if name.endswith(".h5") else data


def _cut_config(name, data):
    return data[:40] if name == "config.json" else data


def _damaged_files(tmp_path):
    source = tmp_path / "good.keras"
    _model_with_random_weights("sequential").save(source)
    data = source.read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.keras").write_bytes(b"not a model at all")
    (tmp_path / "empty.keras").write_bytes(b"")
    _rewrite_archive(source, tmp_path / "weights.keras", _truncate)
    _rewrite_archive(source, tmp_path / "config.keras", _cut_config)
    (tmp_path / "model.txt").write_bytes(data)


DAMAGED = [
    ("truncated", "truncated.keras", "damaged or truncated"),
    ("not-a-zip", "text.keras", "not a zip archive"),
    ("empty", "empty.keras", "not a zip archive"),
    ("truncated-weights", "weights.keras", "failed to load"),
    ("cut-config", "config.keras", "config.json"),
    ("missing", "nowhere.keras", "does not exist"),
    ("other-extension", "model.txt", "expected a path ending in `.keras`"),
]


@pytest.mark.parametrize("name, words", [d[1:] for d in DAMAGED], ids=[d[0] for d in DAMAGED])
def test_damaged_files_give_a_clear_error(name, words, tmp_path):
    _damaged_files(tmp_path)
    path = str(tmp_path / name)
    with pytest.raises(ValueError) as raised:
        pygqa.load_model(path)
    message = str(raised.value)
    assert message.startswith("Received an invalid value for `filepath`")
    assert f"filepath={path!r}" in message and words in message
