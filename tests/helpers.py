"""Building blocks for tests: inputs, masks and layers that share weights."""

import keras
import numpy as np

import pygqa

LAYOUTS = {"mha": (4, 4), "gqa": (8, 2), "mqa": (4, 1)}

# float32 arithmetic with sums over up to ~100 terms: errors of a few ulp of the
# output's scale. Outputs here are O(1), so 2e-6 absolute leaves ~10x headroom
# over the ~2e-7 differences measured between implementations.
ATOL = 2e-6
RTOL = 1e-5


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def compiled(function):
    """`function` compiled the way each backend's users compile it: jax.jit, tf.function;
    torch users run eager."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    return function


def count_calls(monkeypatch, module, name):
    """Wraps `module.name` for the test; returns the list that gets a 1 per call."""
    calls = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def random_weights(layer, rng, scale=0.3):
    """Gives every weight of a built layer random values (biases included)."""
    layer.set_weights(
        [rng.normal(scale=scale, size=w.shape).astype("float32") for w in layer.get_weights()]
    )
    return layer.get_weights()


def inputs(rng, batch=2, target=7, source=None, query_dim=16, value_dim=None, key_dim=None):
    source = target if source is None else source
    value_dim = query_dim if value_dim is None else value_dim
    key_dim = value_dim if key_dim is None else key_dim
    q = rng.normal(size=(batch, target, query_dim)).astype("float32")
    v = rng.normal(size=(batch, source, value_dim)).astype("float32")
    k = rng.normal(size=(batch, source, key_dim)).astype("float32")
    return q, v, k


def random_masks(rng, batch, target, source, p=0.7):
    """One of each mask kind; some rows and one batch row end up empty."""
    query_mask = rng.random((batch, target)) < 0.85
    value_mask = rng.random((batch, source)) < p
    key_mask = rng.random((batch, source)) < 0.9
    attention_mask = rng.random((batch, target, source)) < p
    attention_mask[:, 0, :] = False  # one query row with no key at all
    return dict(
        query_mask=query_mask,
        value_mask=value_mask,
        key_mask=key_mask,
        attention_mask=attention_mask,
    )


def explicit_mask(batch, target, source, query_mask=None, value_mask=None, key_mask=None,
                  attention_mask=None):
    """The (b, t, s) mask equivalent to Keras-style query/value/key masks."""
    keep = np.ones((batch, target, source), dtype=bool)
    if query_mask is not None:
        keep &= query_mask[:, :, None]
    if value_mask is not None:
        keep &= value_mask[:, None, :]
    if key_mask is not None:
        keep &= key_mask[:, None, :]
    if attention_mask is not None:
        keep &= attention_mask
    return keep


def pygqa_and_keras(q, v, k, head_dim, num_query_heads, num_key_value_heads, rng, use_bias=True):
    """A pygqa layer and a keras.layers.GroupQueryAttention with identical random weights."""
    ours = pygqa.GroupQueryAttention(head_dim, num_query_heads, num_key_value_heads,
                                     use_bias=use_bias)
    ours(q, v, k)
    weights = random_weights(ours, rng)
    theirs = keras.layers.GroupQueryAttention(head_dim, num_query_heads, num_key_value_heads,
                                              use_bias=use_bias)
    theirs(q, v, k)
    theirs.set_weights(weights)
    return ours, theirs, weights
