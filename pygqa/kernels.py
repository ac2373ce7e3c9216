"""Backend-native fused attention, used when neither scores nor dropout are needed.

Each kernel takes query (b, t, u, h) and key/value (b, s, k, h) at key/value
head width and returns (b, t, u, h). They follow `attention.py`'s masking
rule: rows without any key are given a harmless all-True mask for the kernel
(so it cannot produce NaN) and their output is set to zero afterwards.
"""

from keras import ops


def _safe_mask(mask):
    """Returns (mask with empty rows opened, (b, t) indicator of non-empty rows)."""
    has_key = ops.any(mask, axis=-1)  # (b, t)
    return ops.logical_or(mask, ops.logical_not(ops.expand_dims(has_key, -1))), has_key


def _zero_empty_rows(output, has_key):
    keep = ops.cast(has_key, output.dtype)[:, :, None, None]  # (b, t, 1, 1)
    return output * keep


def _with_causal(mask, query, key):
    # Imported here: attention.py imports this module at load time.
    from pygqa.attention import causal_mask, combine_masks

    return combine_masks(
        attention_mask=mask, causal=causal_mask(ops.shape(query)[1], ops.shape(key)[1])
    )


def _torch_sdpa(query, key, value, *, mask=None, causal=False):
    import torch.nn.functional as F

    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=grouped)
        return out.transpose(1, 2)
    if causal:
        mask = _with_causal(mask, query, key)
    mask, has_key = _safe_mask(mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=grouped)
    return _zero_empty_rows(out.transpose(1, 2), has_key)


def _jax_dot_product_attention(query, key, value, *, mask=None, causal=False):
    import jax

    # jax.nn.dot_product_attention takes key/value with fewer heads directly.
    if mask is None:
        return jax.nn.dot_product_attention(query, key, value, is_causal=causal)
    if causal:
        mask = _with_causal(mask, query, key)
    mask, has_key = _safe_mask(mask)
    mask = jax.numpy.broadcast_to(mask, (query.shape[0],) + mask.shape[1:])
    out = jax.nn.dot_product_attention(query, key, value, mask=mask[:, None])
    return _zero_empty_rows(out, has_key)


_FUSED = {"torch": _torch_sdpa, "jax": _jax_dot_product_attention}


def fused_attention_for(backend):
    """The backend's fused kernel, or None where the reference einsum path is used."""
    return _FUSED.get(backend)
