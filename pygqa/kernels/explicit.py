"""The explicit path: softmax(Q K^T) V with the full probabilities formed.

The one path that can return the probabilities, drop them out (dropout), cap
the logits (Gemma 2's soft cap) and run on any Keras backend; the others are
fused kernels that never form them (paths.py says which path a call takes).

Letters used in the einsum equations below:
  b batch, t target (query) position, s source (key/value) position,
  u query head, k key/value head, q a group's stacked (head, position) rows,
  h head feature.
Query head `i` belongs to group `i // G` (G = query heads per key/value head),
so splitting the query's head axis `u` into `(k, g)` lines every query head up
with the key/value head it shares; key and value are never repeated.
"""

import keras
from keras import ops

from pygqa.kernels.numerics import MASKED_LOGIT, softmax, with_causal


def attention(query, key, value, *, mask=None, causal=False, scale=None, soft_cap=None,
              dropout=0.0, seed_generator=None):
    """Grouped attention and its probabilities.

    Args:
        query: (batch, T, num_query_heads, head_dim).
        key, value: (batch, S, num_key_value_heads, head_dim).
        mask: optional boolean (batch or 1, T, S); True keeps a key.
        causal: a top-left aligned causal mask on top of `mask`.
        scale, soft_cap: as `probabilities`.
        dropout: the rate of dropout on the probabilities (0: none);
            `seed_generator` seeds it.

    Returns:
        (output (batch, T, num_query_heads, head_dim), probabilities before
        dropout (batch, num_query_heads, T, S)); query rows without any key
        get zero probabilities.
    """
    if causal:
        target_length, source_length = ops.shape(query)[1], ops.shape(key)[1]
        mask = with_causal(mask, target_length, source_length)
    if keras.backend.backend() == "torch" and soft_cap is None and dropout == 0.0:
        # The same arithmetic in fewer large buffers (explicit_torch.py says why).
        from pygqa.kernels import explicit_torch

        return explicit_torch.attention(scaled_query(query, scale), key, value, mask)
    probs = probabilities(query, key, mask, scale=scale, soft_cap=soft_cap)
    kept = probs
    if dropout > 0.0:
        kept = keras.random.dropout(probs, dropout, seed=seed_generator)
    return weighted_values(kept, value), probs


def probabilities(query, key, mask, scale=None, soft_cap=None):
    """Softmax probabilities (b, u, t, s); rows without any key are all zero.

    Each key/value head meets its whole group at once: the group's query rows
    are stacked into one (g * t, h) matrix, one matrix product per head.
    `scale` (None: 1/sqrt(head_dim)) multiplies the query; `soft_cap` caps
    the logits with `soft_cap * tanh(logits / soft_cap)` before the mask.
    """
    batch, target, num_heads, head_dim = ops.shape(query)
    num_kv_heads = ops.shape(key)[2]
    query = ops.transpose(scaled_query(query, scale), (0, 2, 1, 3))  # (b, u, t, h), u = (k, g)
    query = ops.reshape(query, (batch, num_kv_heads, -1, head_dim))  # (b, k, g*t, h)
    logits = ops.einsum("bkqh,bksh->bkqs", query, ops.transpose(key, (0, 2, 1, 3)))
    # Half-precision logits stay so (the products accumulate in float32, and so do
    # the backends' softmax kernels); the mask value is finite in bfloat16.
    logits = ops.reshape(logits, (batch, num_heads, target, -1))  # (b, u, t, s)
    if soft_cap is not None:
        capped = ops.cast(logits, "float32")  # tanh in float32 also for half logits
        capped = ops.tanh(capped / ops.cast(soft_cap, "float32")) * ops.cast(soft_cap, "float32")
        logits = ops.cast(capped, logits.dtype)
    if mask is None:
        return softmax(logits)
    keep = ops.expand_dims(mask, 1)  # (b, 1, t, s)
    logits = ops.where(keep, logits, ops.cast(MASKED_LOGIT, logits.dtype))
    probs = softmax(logits)
    return ops.where(keep, probs, ops.zeros_like(probs))


def scaled_query(query, scale=None):
    """The query times the logit scale (None: 1/sqrt(head_dim)), rounded once."""
    factor = 1.0 / ops.sqrt(float(query.shape[-1])) if scale is None else scale
    if keras.backend.standardize_dtype(query.dtype) == "float32":
        return query * ops.cast(factor, query.dtype)
    # half inputs (a CPU with half-precision units): one rounding, not two
    return ops.cast(ops.cast(query, "float32") * factor, query.dtype)


def weighted_values(probs, value):
    """(b, u, t, s) probabilities x (b, s, k, h) values -> (b, t, u, h)."""
    batch, num_heads, target, source = ops.shape(probs)
    num_kv_heads, head_dim = ops.shape(value)[2], ops.shape(value)[3]
    stacked = ops.reshape(probs, (batch, num_kv_heads, -1, source))  # (b, k, g*t, s)
    output = ops.einsum("bkqs,bksh->bkqh", stacked, ops.transpose(value, (0, 2, 1, 3)))
    output = ops.reshape(output, (batch, num_heads, target, head_dim))  # (b, u, t, h)
    return ops.transpose(output, (0, 2, 1, 3))  # (b, t, u, h)
