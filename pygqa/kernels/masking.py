"""The masking rule for fused kernels: rows without any key output zero, never NaN."""

from keras import ops

from pygqa.masks import with_causal


def open_empty_rows(mask):
    """Returns (mask with empty rows set all-True, (b, t) indicator of non-empty rows).

    Kernels cannot normalise a row with no key; opening it keeps them finite,
    and `zero_empty_rows` then sets those rows' outputs to zero.
    """
    has_key = ops.any(mask, axis=-1)  # (b, t)
    return ops.logical_or(mask, ops.logical_not(ops.expand_dims(has_key, -1))), has_key


def zero_empty_rows(output, has_key):
    """output (b, t, u, h) with the rows of `has_key == False` set to zero."""
    keep = ops.cast(has_key, output.dtype)[:, :, None, None]  # (b, t, 1, 1)
    return output * keep


def prepare(mask, causal, target_length, source_length):
    """The kernel's mask and the rows to zero afterwards (None when nothing is masked).

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
