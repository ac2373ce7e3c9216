"""Sliding-window (band) attention computed as a band, not as a masked square.

Query position t attends key position s iff |t - s| < window (Keras 3.15's
`sliding_window`), and s <= t when causal, and mask[b, t, s]; positions are
top-left aligned (both count from 0, also when T != S). A query row left with
no key outputs exactly zero (pygqa's rule, numerics.py). Work and memory grow
linearly with the length.

`attention` is the band kernel of the current backend: `band_jax.py` and
`band_tf.py` (band_blocks.py's keras.ops blocks with a custom gradient),
`band_torch.py` (torch's fused SDPA per block of query rows); other backends
run band_blocks.py's blocks in a Python loop. The layer reaches the backend
kernels through paths.choose_path (paths `jax_band`, `tf_band`, `torch_band`).
"""

import keras
from keras import ops

from pygqa.kernels import band_blocks
from pygqa.kernels.numerics import zero_empty_rows


def attention(query, key, value, *, window, mask=None, causal=False):
    """Sliding-window grouped attention, differentiable, linear in the length.

    Args:
        query: (batch, T, num_query_heads, head_dim).
        key, value: (batch, S, num_key_value_heads, head_dim); query head i
            uses key/value head i // (num_query_heads // num_key_value_heads).
        window: positive int; query t may attend key s iff |t - s| < window.
        mask: optional boolean (batch or 1, T, S), True = may attend.
        causal: also require s <= t (top-left aligned).

    Returns:
        (batch, T, num_query_heads, head_dim); rows without any key are 0.
    """
    band_blocks.check_window(window)
    for name, length in (("query", query.shape[1]), ("key", key.shape[1])):
        if not isinstance(length, int):
            raise ValueError(
                f"Received an invalid `{name}` for band attention: expected a static "
                f"sequence length (a Python int). Received: shape {tuple(query.shape)}"
            )
    query, key, value = (ops.convert_to_tensor(x) for x in (query, key, value))
    mask = None if mask is None else ops.convert_to_tensor(mask)
    backend = keras.backend.backend()
    # Import statements, not importlib: TensorFlow's autograph tries to convert
    # a function called inside a tf.function, and warns on importlib's.
    module = None
    if backend == "jax":
        from pygqa.kernels import band_jax as module
    elif backend == "tensorflow":
        from pygqa.kernels import band_tf as module
    elif backend == "torch":
        from pygqa.kernels import band_torch as module
    if module is not None:
        return module.attention(query, key, value, window=window, mask=mask, causal=causal)
    # Other backends: the same blocks in a Python loop, differentiated by autodiff.
    plan = band_blocks.plan_band(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], window, causal)
    keep, has_key = band_blocks.keep_blocks(mask, plan)
    layout = band_blocks.Layout(query, key, value, keep, plan, band_blocks.python_map)
    return zero_empty_rows(layout.from_blocks(band_blocks.forward(layout)), has_key)
