"""The three implementations under test, built with the same weights.

- `pygqa`: `pygqa.GroupQueryAttention`.
- `keras_gqa`: `keras.layers.GroupQueryAttention`, the reference.
- `keras_mha`: `keras.layers.MultiHeadAttention(num_heads=u, key_dim=h)` with the
  key/value kernels repeated per group along the head axis (query head i uses
  key/value head i // (u // v)), which computes the same function.
"""

import keras
import numpy as np

from pygqa.bench.shapes import D_MODEL, HEAD_DIM, KV_HEADS, QUERY_HEADS

IMPLS = ("pygqa", "keras_gqa", "keras_mha")
LABELS = {
    "pygqa": "pygqa GQA",
    "keras_gqa": "keras GQA",
    "keras_mha": "keras MHA",
}

# Positions of the key/value kernels and biases in the weight list (Keras order:
# query kernel, query bias, key kernel, key bias, value kernel, value bias, output kernel, bias).
_KV_WEIGHTS = (2, 3, 4, 5)


def new_layer(impl, stand_in=False, policy="float32", gate=False):
    """An unbuilt layer of `impl` under the dtype `policy` (with `gate`, the gated layer:
    GQA only). `stand_in=True` uses Keras's GQA layer for pygqa (to exercise the
    harness where pygqa is not importable)."""
    # Zeros: weights are set from numpy afterwards; Keras's random initializers cost
    # seconds of compilation on jax.
    init = {"kernel_initializer": "zeros", "bias_initializer": "zeros", "dtype": policy}
    if gate:
        if impl == "keras_mha":
            raise ValueError("Received impl='keras_mha' with gate=True: MultiHeadAttention "
                             "has no gate; expected 'pygqa' or 'keras_gqa'.")
        init["use_gate"] = True
    if impl == "pygqa" and not stand_in:
        import pygqa

        return pygqa.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, KV_HEADS, **init)
    if impl in ("pygqa", "keras_gqa"):
        return keras.layers.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, KV_HEADS, **init)
    if impl == "keras_mha":
        return keras.layers.MultiHeadAttention(num_heads=QUERY_HEADS, key_dim=HEAD_DIM, **init)
    raise ValueError(
        f"Received an unknown implementation: expected one of {IMPLS}. Received: {impl!r}"
    )


def _build(layer):
    # build() rather than an eager call: on jax every eager op compiles, which took ~10 s.
    layer.build((1, 4, D_MODEL), (1, 4, D_MODEL))
    return layer


def repeat_kv_for_mha(gqa_weights):
    """GQA weights -> MHA weights: repeat each kv head's kernel/bias u // v times."""
    group = QUERY_HEADS // KV_HEADS
    weights = [np.asarray(w) for w in gqa_weights]
    for i in _KV_WEIGHTS:
        head_axis = 1 if weights[i].ndim == 3 else 0  # kernel (m, v, h); bias (v, h)
        weights[i] = np.repeat(weights[i], group, axis=head_axis)
    return weights


def gqa_weights(seed=0, gate=False):
    """Random GQA weights in Keras order: kernels with variance 1/fan_in (outputs of
    unit scale), biases small but non-zero so that the parity check covers them. With
    `gate`, the gate's kernel and bias follow the key's (Keras's order)."""
    rng = np.random.default_rng(seed)
    m, u, v, h = D_MODEL, QUERY_HEADS, KV_HEADS, HEAD_DIM
    shapes = [(m, u, h), (u, h), (m, v, h), (v, h), (m, v, h), (v, h), (u, h, m), (m,)]
    fan_in = [m, None, m, None, m, None, u * h, None]
    weights = [
        rng.normal(0, 0.1 if f is None else f**-0.5, s).astype(np.float32)
        for s, f in zip(shapes, fan_in, strict=True)
    ]
    if gate:  # drawn after the others, so that those stay the ungated layer's
        weights[4:4] = [rng.normal(0, m**-0.5, (m, u, h)).astype(np.float32),
                        rng.normal(0, 0.1, (u, h)).astype(np.float32)]
    return weights


def build_layers(impls=IMPLS, stand_in=False, seed=0, policy="float32", gate=False):
    """Build every implementation in `impls` with the same GQA weights."""
    weights = gqa_weights(seed, gate)
    layers = {}
    for impl in impls:
        layer = _build(new_layer(impl, stand_in, policy, gate))
        layer.set_weights(repeat_kv_for_mha(weights) if impl == "keras_mha" else weights)
        layers[impl] = layer
    return layers
