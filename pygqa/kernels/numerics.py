"""The numerics every path shares: softmax, the masked logit, masks, rows without a key.

The bottom of the package: it imports nothing from pygqa, and every kernel,
the dispatcher (attention.py), the layer and the cache build on it.

Every mask is boolean with True meaning "may attend". The rule for a query
row left without any key, the same on every path and backend: its attention
probabilities are all zero (its output is zero, the layer's output is the
output projection's bias), never NaN and never a uniform average. The
explicit and band kernels apply it where they make the probabilities; fused
kernels open such rows before the kernel and zero them after
(`open_empty_rows`, `zero_empty_rows`, `prepare`).
"""

from keras import ops

# Logit given to masked keys before the softmax. Logits are always float32
# (half-precision inputs are cast first), so this is finite, and it keeps
# masked keys out of each row's maximum; their probabilities end up zero.
MASKED_LOGIT = -1e30


def softmax(logits):
    """Softmax over the last axis. A single key gets probability 1 without
    keras.ops.softmax's warning about a size-1 axis (one key is a valid input)."""
    if logits.shape[-1] == 1:
        return ops.ones_like(logits)
    return ops.softmax(logits, axis=-1)


def causal_mask(target_length, source_length, offset=0):
    """Lower-triangular (target, source) mask: row `t` sees keys `0 .. offset + t`.

    `offset` 0 aligns it top-left when T != S; a decoding step passes the
    position of its first query row (an int or an integer scalar tensor).
    """
    rows = ops.expand_dims(ops.arange(target_length), 1)
    cols = ops.expand_dims(ops.arange(source_length), 0)
    return ops.greater_equal(rows + offset, cols)


def sliding_window_mask(target_length, source_length, window, offset=0):
    """(target, source) band: row `t` (position `offset + t`) sees keys `s` with
    `|offset + t - s| < window`. ANDed with the causal mask it is the causal
    sliding window (the last `window` positions, the row's own included)."""
    rows = ops.expand_dims(ops.arange(target_length), 1) + offset
    cols = ops.expand_dims(ops.arange(source_length), 0)
    return ops.less(ops.abs(rows - cols), window)


def with_causal(mask, target_length, source_length):
    """`mask` (or None) ANDed with the top-left causal mask, (batch or 1, T, S)."""
    return combine_masks(attention_mask=mask, causal=causal_mask(target_length, source_length))


def combine_masks(
    query_mask=None, value_mask=None, key_mask=None, attention_mask=None, causal=None
):
    """ANDs every mask given into one boolean (batch, T, S) mask, or None.

    `causal` is an optional (T, S) mask. Query masks drop rows, value and key
    masks drop columns; all of them are booleans where True means "attend".
    """
    combined = None

    def _and(mask):
        nonlocal combined
        mask = ops.cast(mask, "bool")
        combined = mask if combined is None else ops.logical_and(combined, mask)

    if query_mask is not None:
        _and(ops.expand_dims(query_mask, -1))  # (b, t, 1)
    if value_mask is not None:
        _and(ops.expand_dims(value_mask, -2))  # (b, 1, s)
    if key_mask is not None:
        _and(ops.expand_dims(key_mask, -2))  # (b, 1, s)
    if attention_mask is not None:
        _and(attention_mask)  # (b, t, s)
    if causal is not None:
        _and(ops.expand_dims(causal, 0))  # (1, t, s)
    return combined


def open_empty_rows(mask):
    """Returns (mask with empty rows set all-True, (b, t) indicator of non-empty rows).

    Kernels cannot normalise a row with no key; opening it keeps them finite,
    and `zero_empty_rows` then sets those rows' outputs to zero.
    """
    has_key = ops.any(mask, axis=-1)  # (b, t)
    return ops.logical_or(mask, ops.logical_not(ops.expand_dims(has_key, -1))), has_key


def zero_empty_rows(output, has_key):
    """output (b, t, u, h) with the rows of `has_key == False` set to zero
    (unchanged where `has_key` is None: every row has a key)."""
    if has_key is None:
        return output
    keep = ops.cast(has_key, output.dtype)[:, :, None, None]  # (b, t, 1, 1)
    return output * keep


def prepare(mask, causal, target_length, source_length):
    """A fused kernel's mask and the rows to zero afterwards (None when nothing is masked).

    The causal mask is folded in before looking for empty rows, since together
    with another mask it can empty a row that neither empties alone.
    """
    if mask is None:
        return None, None
    if causal:
        mask = with_causal(mask, target_length, source_length)
    # Masks built from query/value masks alone broadcast along an axis; the
    # kernels cut them into row blocks, so they need every axis at full size.
    mask = ops.broadcast_to(mask, (ops.shape(mask)[0], target_length, source_length))
    return open_empty_rows(mask)
