"""Masks: combining the layer's mask arguments, the causal mask, the masked logit.

Every mask is boolean with True meaning "may attend". The rule for a query
row left without any key (zero probabilities, never NaN) is applied where the
probabilities are made: attention.py and kernels/masking.py.
"""

from keras import ops

# Logit given to masked keys before the softmax. Logits are always float32
# (half-precision inputs are cast first), so this is finite, and it keeps
# masked keys out of each row's maximum; their probabilities end up zero.
MASKED_LOGIT = -1e30


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
