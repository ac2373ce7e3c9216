"""The key/value cache for incremental (autoregressive) decoding.

The cache follows keras-hub's cached attention convention: one tensor of
shape `(batch, 2, max_length, num_key_value_heads, head_dim)` holding the
projected keys (`[:, 0]`) and values (`[:, 1]`). It is kept at key/value head
width, so it is `num_query_heads / num_key_value_heads` times smaller than a
multi-head cache: that saving is the point of grouped query attention.

A call with `cache` and `cache_update_index=i` projects the new key/value
positions, writes them at positions `i, i + 1, ...` and attends over the whole
cache; positions from `i + T` on hold nothing yet and are masked. With a
causal mask, query row `r` sits at position `i + r` and sees keys up to it, so
decoding one position at a time gives the same outputs as one causal call over
the whole sequence. Everything has a fixed size and the index may be a tensor,
so a decoding step compiles once under `jax.jit` / `tf.function`.

A layer with a sliding window reads its cache as a rolling buffer: position
`p` lives in slot `p % max_length`. A cache at least as long as the sequence
is then laid out exactly as above (slot = position); a shorter one (Mistral's
rolling cache) keeps memory bounded by the window: `max_length =
sliding_window` serves token-by-token decoding of any length, and a call that
adds T positions at once needs `max_length >= sliding_window + T - 1` once
the buffer wraps (its first row still needs `sliding_window - 1` older
positions). Masks on keys then index slots, not positions.
"""

import numbers

import keras
import numpy as np
from keras import ops

from pygqa import validation
from pygqa.kernels.numerics import causal_mask, sliding_window_mask


def empty_cache(batch_size, max_length, num_key_value_heads, head_dim, dtype=None):
    """A zero cache `(batch_size, 2, max_length, num_key_value_heads, head_dim)`."""
    shape = (
        validation.positive_int("batch_size", batch_size),
        2,
        validation.positive_int("max_length", max_length),
        validation.positive_int("num_key_value_heads", num_key_value_heads),
        validation.positive_int("head_dim", head_dim),
    )
    return ops.zeros(shape, dtype=dtype or keras.config.floatx())


_INDEX_EXPECTED = (
    "None or a non-negative integer (a Python int or an integer scalar tensor), "
    "the number of positions already in the cache"
)


def update_index(value):
    """`cache_update_index` as a Python int or an integer scalar tensor, or None."""
    if value is None or isinstance(value, (numbers.Real, np.bool_)) or not hasattr(value, "shape"):
        return validation.optional_non_negative_int("cache_update_index", value, _INDEX_EXPECTED)
    if len(value.shape) != 0 or "int" not in keras.backend.standardize_dtype(value.dtype):
        raise TypeError(
            f"Received an invalid value for `cache_update_index`: expected {_INDEX_EXPECTED}. "
            f"Received: cache_update_index=tensor of shape {tuple(value.shape)}"
        )
    return value


def check(cache_shape, cache_update_index, query_shape, value_shape, num_key_value_heads,
          head_dim, window=None):
    """Checks the cache's shape and that the new positions (value's) fit in it.

    With a sliding `window` the cache is a rolling buffer: the new positions
    must not overwrite positions their own rows still read.
    """
    expected = (query_shape[0], 2, None, num_key_value_heads, head_dim)
    shape = validation.dims(cache_shape)
    if not validation.shape_matches(shape, expected):
        raise ValueError(
            "Received an invalid value for `cache`: expected a tensor of shape "
            "(batch, 2, max_length, num_key_value_heads, head_dim) = "
            f"({query_shape[0]}, 2, max_length, {num_key_value_heads}, {head_dim}). "
            f"Received: cache.shape={shape}"
        )
    new, max_length = value_shape[1], shape[2]
    if window is not None and cache_update_index is not None and None not in (new, max_length):
        _check_rolling(cache_update_index, new, max_length, window)
        return
    if (
        isinstance(cache_update_index, int)
        and None not in (new, max_length)
        and cache_update_index + new > max_length
    ):
        raise ValueError(
            "Received an invalid value for `cache_update_index`: the new positions "
            f"({new} from index {cache_update_index}) must fit in the cache's "
            f"max_length {max_length}. Received: cache_update_index={cache_update_index}"
        )


def _check_rolling(index, new, max_length, window):
    wraps = not isinstance(index, int) or index + new > max_length
    if new > max_length or (wraps and new + window - 1 > max_length):
        raise ValueError(
            "Received an invalid value for `cache`: a rolling cache of max_length "
            f"{max_length} cannot take {new} new positions with sliding_window={window} "
            f"once it wraps: the first new row still reads the {window - 1} positions before "
            f"it, so it needs max_length >= {new + window - 1}. Write at most "
            f"{max(max_length - window + 1, 0)} positions per call, or make a longer cache. "
            f"Received: cache.shape[2]={max_length}, cache_update_index={index}, "
            f"{new} new positions"
        )


def write(cache, key, value, cache_update_index):
    """Writes key/value (b, T, k, h) at `cache_update_index`; returns the new cache."""
    update = ops.stack([key, value], axis=1)  # (b, 2, T, k, h)
    update = ops.cast(update, cache.dtype)
    # One write into the whole cache, instead of two writes and a stack copy.
    return ops.slice_update(cache, (0, 0, cache_update_index, 0, 0), update)


def positions_mask(target_length, new_length, max_length, cache_update_index, causal,
                   window=None):
    """(T or 1, max_length) boolean mask of the cache positions each query row may see.

    `new_length` positions were just written at `cache_update_index`; the ones
    after them hold nothing yet. Causal: query row `r` is position
    `cache_update_index + r`. Without an index (a cache only read) every
    position is open, and a causal mask is top-left aligned, as without cache.
    """
    if cache_update_index is None:
        start = 0
        mask = causal_mask(target_length, max_length) if causal else None
    else:
        start = ops.cast(cache_update_index, "int32")
        if causal:
            mask = causal_mask(target_length, max_length, offset=start)
        else:
            written = ops.less(ops.arange(max_length), start + new_length)  # written so far
            mask = ops.expand_dims(written, 0)  # (1, L): the same for every query row
    if window is None:
        return mask
    if cache_update_index is None:  # a cache only read: top-left aligned, as without one
        band = sliding_window_mask(target_length, max_length, window)
        return band if mask is None else ops.logical_and(mask, band)
    # A rolling buffer: slot j holds position held[j]; row r is position start + r
    # and reads the written positions within `window` of its own (causal: not after it).
    held = slot_positions(max_length, start + new_length - 1)[None]  # (1, L)
    rows = (start + ops.arange(target_length, dtype="int32"))[:, None]  # (T, 1)
    keep = ops.logical_and(ops.greater_equal(held, 0), ops.less(ops.abs(rows - held), window))
    return ops.logical_and(keep, ops.less_equal(held, rows)) if causal else keep


def write_rolling(cache, key, value, cache_update_index):
    """Writes key/value (b, T, k, h) at positions `i .. i + T - 1` into slots `p % L`.

    One position (a decoding step) is one `slice_update` at slot `i % L`. More
    take a one-hot (T, L) product: their slots may wrap around the end of the
    buffer, and the index may be a tensor.
    """
    max_length, new = cache.shape[2], key.shape[1]
    update = ops.cast(ops.stack([key, value], axis=1), cache.dtype)  # (b, 2, T, k, h)
    if new == 1:  # a decoding step never wraps: one write into its slot, as `write` does
        slot = ops.mod(ops.cast(cache_update_index, "int32"), max_length)
        return ops.slice_update(cache, (0, 0, slot, 0, 0), update)
    positions = ops.cast(cache_update_index, "int32") + ops.arange(new, dtype="int32")
    slots = ops.mod(positions, max_length)
    one_hot = ops.cast(ops.equal(slots[:, None], ops.arange(max_length)[None]), cache.dtype)
    written = ops.max(one_hot, axis=0)[None, None, :, None, None]  # (1, 1, L, 1, 1)
    # Letters: t new position, l slot, b batch, c key or value, k head, h feature.
    placed = ops.einsum("tl,bctkh->bclkh", one_hot, update)  # (b, 2, L, k, h)
    return cache * (1 - written) + placed


def slot_positions(max_length, last_position):
    """The position each slot of a rolling buffer holds once `last_position` is
    written: the latest p <= last_position with p % L == slot; negative where
    nothing was written yet."""
    slots = ops.arange(max_length, dtype="int32")
    return last_position - ops.mod(last_position - slots, max_length)
