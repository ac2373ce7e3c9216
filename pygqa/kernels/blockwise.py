"""Attention computed one block of query rows at a time, with its own backward pass.

Used on backends without a memory-efficient fused kernel (TensorFlow, JAX on
CPU). Three things make it faster and lighter than materialising the full
(batch, heads, T, S) probabilities and letting autodiff keep them:

- query heads of a group are stacked into one matrix against their shared
  key/value head, so each contraction is one larger matrix product;
- with a causal mask, a block of rows only meets the keys up to its last row:
  key columns that the mask removes entirely are never computed;
- the forward pass keeps no probabilities: the backward pass recomputes each
  block's (as FlashAttention does, with one fused softmax per block), so
  memory grows with T + S instead of T x S.

Letters: b batch, k key/value head, q a block's stacked (group, row) query
rows, s source position, h head feature.

The math is written with keras.ops; `jax_blockwise.py` and `tf_blockwise.py`
wrap it in each backend's custom-gradient mechanism.
"""

import math

from keras import ops

# Logit given to masked keys. Finite, so a row's maximum stays finite; every
# row reaching the kernel has at least one key (see masking.open_empty_rows).
_MASKED = -1e30

# Target size of one block's logits, in elements (16 MiB in float32), and the
# most blocks a call is split into (each block is unrolled in the graph).
_BLOCK_ELEMENTS = int(__import__("os").environ.get("PYGQA_BLOCK_ELEMENTS", 1 << 22))
_MAX_BLOCKS = 64


def plan_blocks(target_length, source_length, num_query_heads, causal, block_rows=None):
    """Splits the rows into blocks: a list of (first_row, end_row, keys_needed)."""
    if block_rows is None:
        block_rows = max(16, _BLOCK_ELEMENTS // (num_query_heads * source_length))
        block_rows = max(block_rows, math.ceil(target_length / _MAX_BLOCKS))
        block_rows = min(target_length, 16 * math.ceil(block_rows / 16))
    blocks = []
    for start in range(0, target_length, block_rows):
        end = min(target_length, start + block_rows)
        # Top-left causal alignment: row t sees keys 0..t, so a block needs keys < end.
        keys = min(source_length, end) if causal else source_length
        blocks.append((start, end, keys))
    return blocks


class Layout:
    """Inputs rearranged once so that every block is a plain batched matrix product."""

    def __init__(self, query, key, value):
        batch, target, heads, head_dim = query.shape
        self.batch, self.target, self.heads, self.head_dim = batch, target, heads, head_dim
        self.kv_heads = key.shape[2]
        self.group = heads // self.kv_heads
        self.scale = 1.0 / math.sqrt(head_dim)
        # (b, t, u, h) -> (b, k, g, t, h): rows of one group next to each other.
        self.query = self.to_grouped(query * self.scale)
        self.key = ops.transpose(key, (0, 2, 1, 3))  # (b, k, s, h)
        self.value = ops.transpose(value, (0, 2, 1, 3))  # (b, k, s, h)

    def to_grouped(self, x):
        x = ops.reshape(x, (-1, self.target, self.kv_heads, self.group, self.head_dim))
        return ops.transpose(x, (0, 2, 3, 1, 4))

    def from_grouped(self, x):
        x = ops.transpose(x, (0, 3, 1, 2, 4))  # (b, t, k, g, h)
        return ops.reshape(x, (-1, self.target, self.heads, self.head_dim))

    def rows(self, x, start, end):
        """(b, k, g, t, h) -> the block's stacked rows (b, k, g * rows, h)."""
        block = x[:, :, :, start:end, :]
        return ops.reshape(block, (-1, self.kv_heads, self.group * (end - start), x.shape[-1]))

    def unstack(self, x, start, end):
        """(b, k, g * rows, h) -> (b, k, g, rows, h)."""
        return ops.reshape(x, (-1, self.kv_heads, self.group, end - start, x.shape[-1]))


def _block_logits(layout, mask, causal, start, end, keys):
    """Scaled logits of one block, (b, k, g * rows, keys), masked keys at _MASKED."""
    query = layout.rows(layout.query, start, end)
    logits = ops.einsum("bkqh,bksh->bkqs", query, layout.key[:, :, :keys])
    keep = None
    if mask is not None:
        keep = mask[:, None, None, start:end, :keys]  # (b, 1, 1, rows, keys)
    if causal:
        rows = ops.expand_dims(ops.arange(start, end), 1)
        cols = ops.expand_dims(ops.arange(keys), 0)
        tril = ops.greater_equal(rows, cols)[None, None, None]  # (1, 1, 1, rows, keys)
        keep = tril if keep is None else ops.logical_and(keep, tril)
    if keep is None:
        return logits
    grouped = ops.reshape(logits, (-1, layout.kv_heads, layout.group, end - start, keys))
    grouped = ops.where(keep, grouped, ops.cast(_MASKED, logits.dtype))
    return ops.reshape(grouped, ops.shape(logits))


def forward(layout, mask, causal, blocks):
    """Returns the output in the grouped layout, (b, k, g, t, h)."""
    outputs = []
    for start, end, keys in blocks:
        probs = ops.softmax(_block_logits(layout, mask, causal, start, end, keys), axis=-1)
        out = ops.einsum("bkqs,bksh->bkqh", probs, layout.value[:, :, :keys])
        outputs.append(layout.unstack(out, start, end))
    return ops.concatenate(outputs, axis=3)


def backward(layout, mask, causal, blocks, output, grad_output):
    """Gradients (query, key, value) in the inputs' layouts, given d(output)."""
    grad_output = layout.to_grouped(grad_output)  # (b, k, g, t, h)
    source = layout.key.shape[2]
    grad_query_blocks = []
    grad_key = grad_value = None
    for start, end, keys in blocks:
        query = layout.rows(layout.query, start, end)
        d_out = layout.rows(grad_output, start, end)
        # Softmax backward needs each row's <d_out, out>.
        row_dot = ops.sum(d_out * layout.rows(output, start, end), axis=-1, keepdims=True)
        probs = ops.softmax(_block_logits(layout, mask, causal, start, end, keys), axis=-1)
        key, value = layout.key[:, :, :keys], layout.value[:, :, :keys]
        d_value = ops.einsum("bkqs,bkqh->bksh", probs, d_out)
        d_logits = probs * (ops.einsum("bkqh,bksh->bkqs", d_out, value) - row_dot)
        d_query = ops.einsum("bkqs,bksh->bkqh", d_logits, key) * layout.scale
        d_key = ops.einsum("bkqs,bkqh->bksh", d_logits, query)
        if keys < source:  # causal blocks touch only the first `keys` positions
            padding = [(0, 0), (0, 0), (0, source - keys), (0, 0)]
            d_value, d_key = ops.pad(d_value, padding), ops.pad(d_key, padding)
        grad_value = d_value if grad_value is None else grad_value + d_value
        grad_key = d_key if grad_key is None else grad_key + d_key
        grad_query_blocks.append(layout.unstack(d_query, start, end))
    grad_query = layout.from_grouped(ops.concatenate(grad_query_blocks, axis=3))
    return (
        grad_query,
        ops.transpose(grad_key, (0, 2, 1, 3)),  # (b, s, k, h)
        ops.transpose(grad_value, (0, 2, 1, 3)),
    )
