"""Runs the layer on the backend named in KERAS_BACKEND with weights and inputs from an
.npz file, and saves its outputs next to it. Used by test_backends_agree.py."""

import sys

import numpy as np


def main(path, out_path):
    import keras

    import pygqa

    data = np.load(path)
    q, v, mask = data["query"], data["value"], data["attention_mask"]
    layer = pygqa.GroupQueryAttention(8, 8, 2)
    layer(q, v)
    layer.set_weights([data[f"w{i}"] for i in range(8)])
    results = {}
    for name, kwargs in {
        "plain": {},
        "causal": dict(use_causal_mask=True),
        "masked": dict(attention_mask=mask),
    }.items():
        results[name] = keras.ops.convert_to_numpy(layer(q, v, **kwargs))
        out, scores = layer(q, v, return_attention_scores=True, **kwargs)
        results[name + "_scores"] = keras.ops.convert_to_numpy(scores)
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
