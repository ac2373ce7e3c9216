"""Runs the layer under keras.distribution on JAX with 4 virtual CPU devices.

Started by test_distribution.py with KERAS_BACKEND=jax and
XLA_FLAGS=--xla_force_host_platform_device_count=4. For each setup (one
device; DataParallel; ModelParallel on (2, 2) and (1, 4) meshes) it builds
the same small model with the same weights, records its outputs, the weights
after one SGD step, and how each variable is sharded, and saves them to an
.npz file plus a .json file of shardings.
"""

import json
import sys

import numpy as np

# (name, mesh shape or None, kind, num_query_heads, num_key_value_heads)
SETUPS = [
    ("single-8x4", None, None, 8, 4),
    ("single-8x2", None, None, 8, 2),
    ("data-parallel-8x4", (4,), "data", 8, 4),
    ("model-parallel-2x2-8x4", (2, 2), "model", 8, 4),
    ("model-parallel-1x4-8x4", (1, 4), "model", 8, 4),
    # 2 key/value heads on 4 model devices: key/value are replicated.
    ("model-parallel-1x4-8x2", (1, 4), "model", 8, 2),
]
HEAD_DIM, BATCH, TARGET, SOURCE, QUERY_DIM, VALUE_DIM = 4, 4, 7, 5, 16, 12


def initial_data(num_query_heads, num_key_value_heads):
    rng = np.random.default_rng(num_key_value_heads)
    shapes = [(QUERY_DIM, num_query_heads, HEAD_DIM), (num_query_heads, HEAD_DIM),
              (VALUE_DIM, num_key_value_heads, HEAD_DIM), (num_key_value_heads, HEAD_DIM),
              (VALUE_DIM, num_key_value_heads, HEAD_DIM), (num_key_value_heads, HEAD_DIM),
              (num_query_heads, HEAD_DIM, QUERY_DIM), (QUERY_DIM,)]
    weights = [rng.normal(scale=0.3, size=s).astype("float32") for s in shapes]
    query = rng.normal(size=(BATCH, TARGET, QUERY_DIM)).astype("float32")
    value = rng.normal(size=(BATCH, SOURCE, VALUE_DIM)).astype("float32")
    mask = rng.random((BATCH, TARGET, SOURCE)) < 0.7
    mask[:, :, 0] = True
    target = rng.normal(size=(BATCH, TARGET, QUERY_DIM)).astype("float32")
    return weights, query, value, mask, target


def _model(keras, pygqa, num_query_heads, num_key_value_heads):
    query = keras.Input((TARGET, QUERY_DIM), batch_size=BATCH)
    value = keras.Input((SOURCE, VALUE_DIM), batch_size=BATCH)
    mask = keras.Input((TARGET, SOURCE), batch_size=BATCH, dtype="bool")
    layer = pygqa.GroupQueryAttention(HEAD_DIM, num_query_heads, num_key_value_heads,
                                      name="gqa")
    output = layer(query, value, attention_mask=mask, use_causal_mask=True)
    return keras.Model([query, value, mask], output), layer


def _sharding(variable):
    array = variable.value
    spec = getattr(array.sharding, "spec", None)
    return {
        "spec": None if spec is None else [None if a is None else str(a) for a in spec],
        "shard_shape": list(array.addressable_shards[0].data.shape),
        "devices": len(array.sharding.device_set),
    }


def _run(keras, pygqa, num_query_heads, num_key_value_heads):
    weights, query, value, mask, target = initial_data(num_query_heads, num_key_value_heads)
    model, layer = _model(keras, pygqa, num_query_heads, num_key_value_heads)
    layer.set_weights(weights)
    results = {"output": keras.ops.convert_to_numpy(model([query, value, mask]))}
    scores = layer(query, value, attention_mask=mask, return_attention_scores=True)[1]
    results["scores"] = keras.ops.convert_to_numpy(scores)
    shardings = {v.path: _sharding(v) for v in layer.weights}
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse", jit_compile=True)
    results["loss"] = np.asarray(model.train_on_batch([query, value, mask], target))
    for i, w in enumerate(layer.get_weights()):
        results[f"trained_w{i}"] = w
    after = {v.path: _sharding(v) for v in layer.weights}
    return results, {"initial": shardings, "after_step": after}


def main(out_prefix):
    import jax
    import keras

    import pygqa

    assert keras.backend.backend() == "jax", keras.backend.backend()
    devices = keras.distribution.list_devices()
    arrays, info = {}, {"devices": [str(d) for d in devices], "jax": jax.__version__}
    for name, mesh_shape, kind, u, v in SETUPS:
        if kind is None:
            distribution = None
        elif kind == "data":
            distribution = keras.distribution.DataParallel(devices=devices)
        else:
            mesh = keras.distribution.DeviceMesh(mesh_shape, ["batch", "model"], devices)
            layouts = pygqa.layout_map(mesh, "model", num_query_heads=u, num_key_value_heads=v)
            distribution = keras.distribution.ModelParallel(layout_map=layouts,
                                                            batch_dim_name="batch")
        if distribution is None:
            results, shardings = _run(keras, pygqa, u, v)
        else:
            with distribution.scope():
                results, shardings = _run(keras, pygqa, u, v)
        for key, value in results.items():
            arrays[f"{name}/{key}"] = value
        info[name] = shardings
    np.savez(out_prefix + ".npz", **arrays)
    with open(out_prefix + ".json", "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
