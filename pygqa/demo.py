"""The main job: a small model with the layer, checked against Keras's own layer.

Run with `python -m pygqa.demo` (the README's first command does it for you).
It builds a model with pygqa's layer, gives keras.layers.GroupQueryAttention
the same weights, and prints both outputs' shapes and their largest difference.
"""

import numpy as np


def build_model(keras, layer, length=16, features=32):
    """Input -> grouped-query self-attention (causal) -> Dense."""
    inputs = keras.Input((length, features))
    attended = layer(inputs, inputs, use_causal_mask=True)
    outputs = keras.layers.Dense(features, name="head")(attended)
    return keras.Model(inputs, outputs)


def main():
    import keras

    import pygqa

    rng = np.random.default_rng(2023)
    x = rng.normal(size=(4, 16, 32)).astype("float32")
    ours = build_model(keras, pygqa.GroupQueryAttention(head_dim=8, num_query_heads=8,
                                                        num_key_value_heads=2, seed=1))
    theirs = build_model(keras, keras.layers.GroupQueryAttention(8, 8, 2))
    theirs.set_weights(ours.get_weights())
    out_ours = keras.ops.convert_to_numpy(ours.predict(x, verbose=0))
    out_theirs = keras.ops.convert_to_numpy(theirs.predict(x, verbose=0))
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    print(f"pygqa {pygqa.__version__}: 8 query heads share 2 key/value heads (groups of 4)")
    print(f"pygqa output shape:                         {out_ours.shape}")
    print(f"keras.layers.GroupQueryAttention out shape: {out_theirs.shape}")
    print(f"largest difference: {np.abs(out_ours - out_theirs).max():.3g}")


if __name__ == "__main__":
    main()
