"""The attention computation behind the layer: one dispatcher over the kernels.

`grouped_attention` takes the projected heads, asks `kernels.choose_path`
which path the call takes (the reason for every choice is written there), and
hands the call to that path's kernel: the explicit path (kernels/explicit.py:
softmax, probabilities, weighted values) or a fused one (kernels/paths.py
lists them). It owns only what is common to all of them: half-precision
inputs cast to float32 for the paths that upcast, the logit scale folded into
the query for the fused ones, and the output cast back.

Every path pairs query head `i` with key/value head `i // G` (G = query heads
per key/value head) without repeating key and value, and gives a query
position with no key left to attend to all-zero attention probabilities (its
output is the output projection's bias), never NaN and never a uniform
average (kernels/numerics.py).
"""

import math

import keras
from keras import ops

from pygqa import kernels
from pygqa.kernels import explicit
from pygqa.kernels.numerics import combine_masks, sliding_window_mask


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
        masked=mask is not None,
        causal=causal,
        scores=return_scores,
        dropout=use_dropout,
        flash_attention=flash_attention,
        soft_cap=soft_cap is not None,
        window=window,
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
    if path.band:  # computed as a band: work and memory linear in the length
        output = kernels.kernel(path)(query, key, value, window=window, mask=mask, causal=causal)
        return ops.cast(output, compute_dtype)
    if window is not None:  # elsewhere the window is one more mask
        window_mask = sliding_window_mask(ops.shape(query)[1], ops.shape(key)[1], window)
        mask = combine_masks(attention_mask=mask, causal=window_mask)
    if path.fused:
        output = kernels.kernel(path)(query, key, value, mask=mask, causal=causal)
        return ops.cast(output, compute_dtype)

    output, probs = explicit.attention(
        query, key, value, mask=mask, causal=causal, scale=scale, soft_cap=soft_cap,
        dropout=dropout if use_dropout else 0.0, seed_generator=seed_generator,
    )
    output = ops.cast(output, compute_dtype)
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
