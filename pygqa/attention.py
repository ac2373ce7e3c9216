"""The attention computation behind the layer, on projected heads.

Letters used in the einsum equations below:
  b batch, t target (query) position, s source (key/value) position,
  u query head, k key/value head, q a group's stacked (head, position) rows,
  h head feature.
Query head `i` belongs to group `i // G` (G = query heads per key/value head),
so splitting the query's head axis `u` into `(k, g)` lines every query head up
with the key/value head it shares; key and value are never repeated.

Masking rule, the same on every path and backend: a query position with no
key left to attend to gets all-zero attention probabilities (its output is
the output projection's bias), never NaN and never a uniform average.
"""

import math

import keras
from keras import ops

from pygqa import kernels
from pygqa.masks import MASKED_LOGIT, combine_masks, sliding_window_mask, with_causal

# Paths on which a sliding window runs as pygqa's band kernel: the CPU
# blockwise kernels. torch keeps one SDPA call with the band as a mask (its
# per-block band variant, kernels/band_torch.py, was not faster in every
# measured case), and the GPU kernels take the band as a mask.
_BAND_PATHS = ("tf_blockwise", "jax_blockwise")


def softmax(logits):
    """Softmax over the last axis. A single key gets probability 1 without
    keras.ops.softmax's warning about a size-1 axis (one key is a valid input)."""
    if logits.shape[-1] == 1:
        return ops.ones_like(logits)
    return ops.softmax(logits, axis=-1)


def grouped_attention(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    window=None,
    return_scores=False,
    dropout=0.0,
    training=False,
    seed_generator=None,
    flash_attention=None,
    scale=None,
    soft_cap=None,
):
    """Scaled dot-product attention with key/value heads shared by groups.

    Args:
        query: (batch, T, num_query_heads, head_dim).
        key, value: (batch, S, num_key_value_heads, head_dim).
        mask: optional boolean (batch or 1, T, S); True keeps a key.
        causal: apply a top-left aligned causal mask on top of `mask`.
        window: a sliding window (positive int) on top of both: position t
            attends only to positions s with |t - s| < window.
        return_scores: also return the probabilities, (batch, u, T, S).
        dropout, training, seed_generator: dropout on the probabilities.
        flash_attention: None picks the fastest path for the call and the
            device (kernels/paths.py); True requires a fused kernel
            (ValueError where none can run); False always takes the explicit
            path.
        scale: the factor of the logits; None is 1/sqrt(head_dim). Paths
            that scale by 1/sqrt(head_dim) themselves get a query
            multiplied by `scale * sqrt(head_dim)`.
        soft_cap: None, or a positive number: logits become
            `soft_cap * tanh(logits / soft_cap)` before the mask and the
            softmax (Gemma 2). Only the explicit path does it.

    Returns:
        (batch, T, num_query_heads, head_dim), and the probabilities before
        dropout when `return_scores` is set.
    """
    compute_dtype = query.dtype
    backend = keras.backend.backend()
    use_dropout = dropout > 0.0 and bool(training)
    path = kernels.choose_path(
        backend,
        kernels.current_device(backend, query),
        keras.backend.standardize_dtype(compute_dtype),
        head_dim=query.shape[-1],
        target_length=query.shape[1],
        source_length=key.shape[1],
        masked=mask is not None or window is not None,
        causal=causal,
        scores=return_scores,
        dropout=use_dropout,
        flash_attention=flash_attention,
        soft_cap=soft_cap is not None,
    )
    if flash_attention:
        _check_fused_possible(path, return_scores, use_dropout, dropout, query, key)
    # Paths that upcast (the explicit and blockwise ones) run logits, masking
    # and softmax in float32 under half-precision policies, so neither large
    # logits nor the masking value can overflow. The fused GPU kernels take
    # the compute dtype and accumulate in float32 themselves.
    if path.upcast and keras.backend.standardize_dtype(compute_dtype) in ("float16", "bfloat16"):
        query, key, value = (ops.cast(x, "float32") for x in (query, key, value))
    if scale is not None and path.fused:
        # The fused and band kernels scale by 1/sqrt(head_dim): pre-scale the query.
        query = query * ops.cast(scale * math.sqrt(query.shape[-1]), query.dtype)
    if window is not None and path.name in _BAND_PATHS:
        # Computed as a band: work and memory linear in the length. Imported here:
        # band.py uses this module's softmax.
        from pygqa.kernels import band

        output = band.attention(query, key, value, window=window, mask=mask, causal=causal)
        return ops.cast(output, compute_dtype)
    if window is not None:  # elsewhere the window is one more mask
        window_mask = sliding_window_mask(ops.shape(query)[1], ops.shape(key)[1], window)
        mask = combine_masks(attention_mask=mask, causal=window_mask)
    if path.fused:
        output = kernels.kernel(path)(query, key, value, mask=mask, causal=causal)
        return ops.cast(output, compute_dtype)

    if causal:
        target_length, source_length = ops.shape(query)[1], ops.shape(key)[1]
        mask = with_causal(mask, target_length, source_length)
    probs = attention_probabilities(query, key, mask, scale=scale, soft_cap=soft_cap)
    kept = probs
    if use_dropout:
        kept = keras.random.dropout(probs, dropout, seed=seed_generator)
    output = ops.cast(weighted_values(kept, value), compute_dtype)
    if not return_scores:
        return output
    return output, ops.cast(probs, compute_dtype)


def _check_fused_possible(path, return_scores, use_dropout, dropout, query, key):
    """Raises where `flash_attention=True` asks for a fused kernel the call cannot use."""
    reason = None
    if return_scores:
        reason = ("it never forms the attention probabilities, so it cannot return them. "
                  "Received: flash_attention=True, return_attention_scores=True")
    elif use_dropout:
        reason = ("it cannot drop attention probabilities, so it cannot train with dropout. "
                  f"Received: flash_attention=True, dropout={dropout}, training=True")
    elif not path.fused and (query.shape[1] is None or key.shape[1] is None):
        reason = ("on this backend it needs static sequence lengths. Received: "
                  f"flash_attention=True, query length {query.shape[1]}, "
                  f"key length {key.shape[1]}")
    elif not path.fused:
        reason = (f"none runs here: {path.reason}. Received: flash_attention=True, "
                  f"backend {keras.backend.backend()!r}")
    if reason is not None:
        raise ValueError(
            "Received an invalid combination for `flash_attention`: True requires the "
            f"fused attention kernel, and {reason}. Use flash_attention=None to let the "
            "layer choose the path."
        )


def attention_probabilities(query, key, mask, scale=None, soft_cap=None):
    """Softmax probabilities (b, u, t, s); rows without any key are all zero.

    Each key/value head meets its whole group at once: the group's query rows
    are stacked into one (g * t, h) matrix, one matrix product per head.
    `scale` (None: 1/sqrt(head_dim)) multiplies the query; `soft_cap` caps
    the logits with `soft_cap * tanh(logits / soft_cap)` before the mask.
    """
    batch, target, num_heads, head_dim = ops.shape(query)
    num_kv_heads = ops.shape(key)[2]
    if scale is None:
        query = query * ops.cast(1.0 / ops.sqrt(float(head_dim)), query.dtype)
    else:
        query = query * ops.cast(scale, query.dtype)
    query = ops.transpose(query, (0, 2, 1, 3))  # (b, u, t, h), u = (k, g)
    query = ops.reshape(query, (batch, num_kv_heads, -1, head_dim))  # (b, k, g*t, h)
    logits = ops.einsum("bkqh,bksh->bkqs", query, ops.transpose(key, (0, 2, 1, 3)))
    logits = ops.reshape(logits, (batch, num_heads, target, -1))  # (b, u, t, s)
    if soft_cap is not None:
        logits = ops.tanh(logits / ops.cast(soft_cap, logits.dtype)) * ops.cast(
            soft_cap, logits.dtype)
    if mask is None:
        return softmax(logits)
    keep = ops.expand_dims(mask, 1)  # (b, 1, t, s)
    logits = ops.where(keep, logits, ops.cast(MASKED_LOGIT, logits.dtype))
    probs = softmax(logits)
    return ops.where(keep, probs, ops.zeros_like(probs))


def weighted_values(probs, value):
    """(b, u, t, s) probabilities x (b, s, k, h) values -> (b, t, u, h)."""
    batch, num_heads, target, source = ops.shape(probs)
    num_kv_heads, head_dim = ops.shape(value)[2], ops.shape(value)[3]
    stacked = ops.reshape(probs, (batch, num_kv_heads, -1, source))  # (b, k, g*t, s)
    output = ops.einsum("bkqs,bksh->bkqh", stacked, ops.transpose(value, (0, 2, 1, 3)))
    output = ops.reshape(output, (batch, num_heads, target, head_dim))  # (b, u, t, h)
    return ops.transpose(output, (0, 2, 1, 3))  # (b, t, u, h)
