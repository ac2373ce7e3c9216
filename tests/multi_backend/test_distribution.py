"""The layer under keras.distribution (JAX, 4 virtual CPU devices) and pygqa.layout_map.

distribution_worker.py runs in a JAX subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (the test process may run
another backend, and the device count is fixed when JAX starts). The oracle
is the same model with the same weights on one device.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import pygqa

WORKER = os.path.join(os.path.dirname(__file__), "distribution_worker.py")
sys.path.insert(0, os.path.dirname(__file__))
from distribution_worker import SETUPS, initial_data  # noqa: E402

# Sharded runs sum the output projection across devices in another order:
# float32 rounding, measured up to ~1e-6 on these O(1)-O(10) outputs.
ATOL, RTOL = 2e-6, 1e-5

DISTRIBUTED = [(name, u, v) for name, mesh, _, u, v in SETUPS if mesh is not None]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("distribution") / "out")
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=4", TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, WORKER, prefix], env=env, check=True, timeout=600)
    with open(prefix + ".json") as f:
        info = json.load(f)
    return dict(np.load(prefix + ".npz")), info


def test_four_devices(run):
    _, info = run
    assert info["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]


@pytest.mark.parametrize("name, u, v", DISTRIBUTED, ids=[d[0] for d in DISTRIBUTED])
@pytest.mark.parametrize("what", ["output", "scores", "loss", "trained_weights"])
def test_same_numbers_as_one_device(run, name, u, v, what):
    arrays, _ = run
    single = f"single-{u}x{v}"
    keys = [f"trained_w{i}" for i in range(8)] if what == "trained_weights" else [what]
    for key in keys:
        np.testing.assert_allclose(arrays[f"{name}/{key}"], arrays[f"{single}/{key}"],
                                   atol=ATOL, rtol=RTOL, err_msg=key)
    # The step changed the weights, so equal trained weights mean equal gradients.
    # Not the key bias: it adds q.b_k to every logit of a row, which softmax
    # ignores, so its gradient is zero.
    if what == "trained_weights":
        for i, initial in enumerate(initial_data(u, v)[0]):
            changed = np.max(np.abs(arrays[f"{single}/trained_w{i}"] - initial))
            assert changed < 1e-7 if i == 3 else changed > 1e-4, (i, changed)


# Expected per-variable (spec, shard shape) for ModelParallel, written out.
def _expected_model_parallel(model_size, u, v, replicate_kv):
    h, m, mk = 4, 16, 12
    kv_spec, kv_heads = ((None, None, None), v) if replicate_kv else \
        ((None, "model", None), v // model_size)
    return {
        "gqa/query/kernel": ([None, "model", None], [m, u // model_size, h]),
        "gqa/query/bias": (["model", None], [u // model_size, h]),
        "gqa/key/kernel": (list(kv_spec), [mk, kv_heads, h]),
        "gqa/key/bias": (list(kv_spec[1:]), [kv_heads, h]),
        "gqa/value/kernel": (list(kv_spec), [mk, kv_heads, h]),
        "gqa/value/bias": (list(kv_spec[1:]), [kv_heads, h]),
        "gqa/attention_output/kernel": (["model", None, None], [u // model_size, h, m]),
        "gqa/attention_output/bias": ([None], [m]),
    }


@pytest.mark.parametrize("name, model_size, u, v, replicate_kv", [
    ("model-parallel-2x2-8x4", 2, 8, 4, False),
    ("model-parallel-1x4-8x4", 4, 8, 4, False),
    ("model-parallel-1x4-8x2", 4, 8, 2, True),
], ids=["2x2", "1x4", "1x4-kv-replicated"])
@pytest.mark.parametrize("when", ["initial", "after_step"])
def test_model_parallel_shards_the_head_axes(run, name, model_size, u, v, replicate_kv, when):
    _, info = run
    expected = _expected_model_parallel(model_size, u, v, replicate_kv)
    seen = info[name][when]
    assert set(seen) == set(expected)
    for path, (spec, shard_shape) in expected.items():
        assert seen[path]["devices"] == 4, path
        assert (seen[path]["spec"], seen[path]["shard_shape"]) == (spec, shard_shape), path


@pytest.mark.parametrize("when", ["initial", "after_step"])
def test_data_parallel_replicates_every_weight(run, when):
    _, info = run
    for path, seen in info["data-parallel-8x4"][when].items():
        assert seen["devices"] == 4
        assert all(axis is None for axis in seen["spec"]), path
        assert seen["shard_shape"] == info["single-8x4"]["initial"][path]["shard_shape"]


# --- layout_map itself (any backend: a mesh of named devices is plain data) ---

def _mesh(shape=(2, 2), names=("batch", "model")):
    return keras.distribution.DeviceMesh(shape, list(names),
                                         [f"cpu:{i}" for i in range(int(np.prod(shape)))])


def test_keys_match_projection_paths_only():
    layouts = pygqa.layout_map(_mesh())
    assert layouts["gqa/query/kernel"].axes == (None, "model", None)
    assert layouts["model/block_1/gqa/value/bias"].axes == ("model", None)
    assert layouts["mha/attention_output/kernel"].axes == ("model", None, None)
    assert layouts["gqa/attention_output/bias"].axes == (None,)
    for path in ("query/kernel", "gqa/my_query/kernel", "dense/kernel", "gqa/query/kernel/x"):
        assert layouts[path] is None, path
    assert all(layout.device_mesh is layouts.device_mesh for layout in layouts.values())


def test_layer_name_and_other_axis_names():
    layouts = pygqa.layout_map(_mesh((4,), ("heads",)), "heads", layer_name="gqa.1")
    assert layouts["encoder/gqa.1/key/kernel"].axes == (None, "heads", None)
    assert layouts["encoder/gqa_1/key/kernel"] is None  # the dot is not a regex wildcard
    assert layouts["mha/key/kernel"] is None


def test_key_value_heads_replicate_only_when_they_do_not_divide():
    assert pygqa.layout_map(_mesh((1, 4)), num_key_value_heads=8)["g/key/kernel"].axes == \
        (None, "model", None)
    layouts = pygqa.layout_map(_mesh((1, 4)), num_query_heads=8, num_key_value_heads=2)
    assert layouts["g/key/kernel"].axes == (None, None, None)
    assert layouts["g/value/bias"].axes == (None, None)
    assert layouts["g/query/kernel"].axes == (None, "model", None)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(device_mesh=(2, 2)), TypeError,
     r"`device_mesh`: expected a keras.distribution.DeviceMesh. Received: device_mesh=\(2, 2\)"),
    (dict(model_axis="heads"), ValueError,
     r"`model_axis`: expected one of the mesh's axis names \('batch', 'model'\). "
     r"Received: model_axis='heads'"),
    (dict(num_query_heads=6, model_axis="model", device_mesh="1x4"), ValueError,
     r"`num_query_heads`: expected a number of query heads divisible by the size of mesh "
     r"axis 'model' \(4\).*Received: num_query_heads=6"),
    (dict(num_key_value_heads=0), ValueError,
     r"`num_key_value_heads`: expected a positive integer. Received: num_key_value_heads=0"),
    (dict(layer_name=3), TypeError, r"`layer_name`: expected None or a layer name. "
                                    r"Received: layer_name=3"),
], ids=["mesh-type", "axis-name", "query-heads", "kv-heads", "layer-name"])
def test_errors_name_the_argument(kwargs, error, pattern):
    kwargs = dict(kwargs)
    mesh = kwargs.pop("device_mesh", _mesh())
    mesh = _mesh((1, 4)) if mesh == "1x4" else mesh
    with pytest.raises(error, match=pattern):
        pygqa.layout_map(mesh, **kwargs)
