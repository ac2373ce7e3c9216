"""Attention computed one block of query rows at a time, with its own backward pass.

Used on backends without a memory-efficient fused kernel (TensorFlow, JAX on
CPU). Three things make it faster and lighter than materialising the full
(batch, heads, T, S) probabilities and letting autodiff keep them:

- query heads of a group are stacked into one matrix against their shared
  key/value head, so each contraction is one larger matrix product;
- with a causal mask, rows are processed in buckets and a bucket only meets
  the keys up to its last row: key columns the mask removes are not computed;
- blocks run in a sequential loop (a scan). When gradients are wanted, the
  forward pass keeps the probabilities of as many blocks as fit in a fixed
  budget, and the backward pass recomputes the others (as FlashAttention
  does): small problems skip the recomputation, and memory beyond the budget
  grows with T + S instead of T x S. JAX on CPU keeps none
  (jax_blockwise.keep_elements says why).

Letters: n block, b batch, k key/value head, g query head in its group,
r row in a block, q a block's stacked (group, row) rows, s source position,
h head feature.

The loop over blocks is written with keras.ops; a block's own products come
from a products object, which also fixes the layout of its logits:
`QUERY_MAJOR` here (keras.ops, (b, k, q, s)), or TensorFlow's key-major one
(tf_blockwise.py, (b, k, s, q)). `jax_blockwise.py` and `tf_blockwise.py`
wrap the loop in each backend's custom-gradient mechanism.
"""

import collections
import math
import os

from keras import ops

from pygqa.kernels.blocks import QueryBlocks
from pygqa.kernels.numerics import MASKED_LOGIT, causal_mask, softmax

# Target size of one block's logits in elements (16 MiB in float32), and how
# many key-length buckets a causal call is split into: with n buckets the
# work done is (n + 1) / 2n of the full square instead of 1/2 of it.
_BLOCK_ELEMENTS = 1 << 22
_CAUSAL_BUCKETS = 8

# Query rows (heads of a group x positions) from which keys are also held
# transposed for Q K^T (see Layout).
_TRANSPOSED_KEYS_MIN_ROWS = 64

# Probabilities the forward pass may keep for the backward pass, in elements
# (512 MiB in float32). A kept block saves the backward pass one matrix
# product and one exp per logit; past the budget, blocks are recomputed.
KEEP_ELEMENTS = 1 << 27

# rows: rows per block; num_blocks: blocks after padding T up to a multiple of
# rows; buckets: (first_block, end_block, keys_needed, keep) tuples, where
# `keep` says whether the bucket's probabilities fit in the budget.
Plan = collections.namedtuple("Plan", ["rows", "num_blocks", "buckets"])


def cache_block_elements(l3_bytes=None):
    """Block size (logit elements) from the last-level cache: a quarter of it.

    Side by side on an AMD EPYC with 32 MiB of L3 (TensorFlow, fwd+bwd of the
    kernel, 9 rounds), 2^21 elements (8 MiB, a quarter of the L3) ran 1.05-1.07x
    faster than 2^22 at 1 x 2048 and 1 x 4096 and the same at 4 x 512 and
    8 x 128; 2^20 gained less. Clamped to [2^20, 2^22]; None when the cache
    size cannot be read.
    """
    if l3_bytes is None:
        l3_bytes = _last_level_cache_bytes()
    if not l3_bytes:
        return None
    return min(1 << 22, max(1 << 20, l3_bytes // 4 // 4))  # float32 elements


def _last_level_cache_bytes(root="/sys/devices/system/cpu/cpu0/cache"):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    best = 0
    try:
        for entry in os.listdir(root):
            if entry.startswith("index"):
                with open(os.path.join(root, entry, "size")) as f:
                    size = f.read().strip()
                best = max(best, int(size[:-1]) * units[size[-1]] if size[-1] in units
                           else int(size))
    except (OSError, ValueError):
        return None
    return best or None


def plan_blocks(batch, target_length, source_length, num_query_heads, causal,
                block_elements=None, max_rows=None, keep_elements=None):
    """Chooses the block size, the causal key-length buckets and which blocks to keep.

    `block_elements`: target logits per block (default `_BLOCK_ELEMENTS`);
    `max_rows`: an upper bound on the query positions per block;
    `keep_elements`: the budget of kept probabilities (default `KEEP_ELEMENTS`).
    """
    # The batch only sizes the blocks. It may be unknown (None) or symbolic (a
    # JAX export with a polymorphic batch, where arithmetic on it is refused).
    batch = batch if isinstance(batch, int) else 1
    per_row = batch * num_query_heads * source_length
    rows = max(16, (block_elements or _BLOCK_ELEMENTS) // per_row)
    if max_rows is not None:
        rows = min(rows, max_rows)
    # A multiple of 16 rows, but never more than the query has: a decoding
    # step (one row) must not compute 15 rows of padding.
    rows = min(target_length, 16 * math.ceil(rows / 16))
    num_blocks = math.ceil(target_length / rows)
    if not causal:
        buckets = ((0, num_blocks, source_length),)
    else:
        count = min(num_blocks, _CAUSAL_BUCKETS)
        edges = [round(i * num_blocks / count) for i in range(count + 1)]
        # Top-left causal alignment: row t sees keys 0..t, so a bucket needs keys < its end.
        buckets = tuple(
            (first, end, min(source_length, end * rows))
            for first, end in zip(edges, edges[1:])
        )
    block_rows = batch * num_query_heads * rows
    budget = KEEP_ELEMENTS if keep_elements is None else keep_elements
    return Plan(rows, num_blocks, _split_at_budget(buckets, block_rows, budget))


def _split_at_budget(buckets, block_rows, budget):
    """Marks the leading blocks whose probabilities fit in `budget` elements as kept,
    splitting the bucket where the budget runs out."""
    marked = []
    for first, end, keys in buckets:
        fitting = min(end - first, budget // (block_rows * keys))
        budget -= fitting * block_rows * keys
        if fitting > 0:
            marked.append((first, first + fitting, keys, True))
        if first + fitting < end:
            marked.append((first + fitting, end, keys, False))
    return tuple(marked)


class Layout(QueryBlocks):
    """Inputs rearranged once so that every block is a plain batched matrix product.

    Query rows in blocks as blocks.py lays them out; keys and values whole,
    each bucket reading its first keys.

    `scan(step, init, inputs) -> (carry, stacked outputs)` is the backend's
    sequential loop (keras.ops.scan requires outputs shaped like the carry).
    When a step returns a tuple, only its first element must come back
    stacked: the others (kept probabilities) are only ever handed back to
    `scan` as inputs, so a backend may return them in the form its loop
    reads fastest.

    `products` computes each block's matrix products and fixes the layout of
    its logits (`QUERY_MAJOR` here; TensorFlow brings its own, tf_blockwise.py).
    """

    def __init__(self, query, key, value, mask, causal, plan, scan, products=None):
        super().__init__(query, key, plan)
        self.scan = scan
        self.products = products or QUERY_MAJOR
        self.causal = causal
        self.query = self.to_blocks(self.scaled(query))  # (n, b, k, q, h)
        self.key = ops.transpose(key, (0, 2, 1, 3))  # (b, k, s, h)
        self.value = ops.transpose(value, (0, 2, 1, 3))  # (b, k, s, h)
        self.mask = None if mask is None else self._mask_blocks(mask)  # (n, b, r, s)
        self.products.prepare(self)

    def _mask_blocks(self, mask):
        rows, blocks = self.plan.rows, self.plan.num_blocks
        padding = [(0, 0), (0, rows * blocks - self.target), (0, 0)]
        mask = ops.pad(mask, padding, constant_values=True)  # padded rows are dropped later
        mask = ops.reshape(mask, (-1, blocks, rows, mask.shape[-1]))
        return ops.transpose(mask, (1, 0, 2, 3))

    def bucket_inputs(self, first, end, keys, *per_block):
        """The scan inputs of one bucket: blocks of each tensor, row offsets, mask."""
        inputs = [x[first:end] for x in per_block]
        inputs.append(ops.arange(first, end) * self.plan.rows)
        if self.mask is not None:
            inputs.append(self.mask[first:end, :, :, :keys])
        return inputs

    def keep_mask(self, start, mask, keys):
        """Which of a block's (row, key) pairs are attended, (b or 1, r, keys), or None."""
        keep = mask
        if self.causal:
            tril = causal_mask(self.plan.rows, keys, offset=start)[None]  # (1, r, keys)
            keep = tril if keep is None else ops.logical_and(keep, tril)
        return keep


class QueryMajorProducts:
    """A block's products with its logits laid out (b, k, q, s), query rows first.

    XLA (JAX on CPU) runs these fastest. The backward pass accumulates the key
    and value gradients transposed, (b, k, h, s): as (h x q) x (q x s)
    products they ran ~3x faster than as (s x q) x (q x h), which read the
    probabilities across their rows.
    """

    def prepare(self, layout):
        # Keys also transposed once, (b, k, h, s), for Q K^T: TensorFlow ran a
        # product without a transposed operand ~5% faster. The copy pays off
        # only over many query rows: a decoding step reads the keys as they are.
        layout.key_t = None
        if layout.group * layout.target >= _TRANSPOSED_KEYS_MIN_ROWS:
            layout.key_t = ops.transpose(layout.key, (0, 1, 3, 2))

    def probabilities(self, layout, query, start, mask, keys):
        """One block's attention probabilities, (b, k, q, keys)."""
        if layout.key_t is None:
            logits = ops.einsum("bkqh,bksh->bkqs", query, layout.key[:, :, :keys])
        else:
            logits = ops.einsum("bkqh,bkhs->bkqs", query, layout.key_t[..., :keys])
        logits = ops.cast(logits, layout.sum_dtype)  # masked and normalised in float32
        keep = layout.keep_mask(start, mask, keys)
        if keep is not None:
            shape = ops.shape(logits)
            grouped = ops.reshape(
                logits, (-1, layout.kv_heads, layout.group, layout.plan.rows, keys)
            )
            keep = keep[:, None, None]  # (b, 1, 1, r, keys)
            grouped = ops.where(keep, grouped, ops.cast(MASKED_LOGIT, logits.dtype))
            logits = ops.reshape(grouped, shape)
        return softmax(logits)

    def weighted_values(self, probs, value):
        """(b, k, q, keys) probabilities x (b, k, keys, h) values -> (b, k, q, h)."""
        return ops.einsum("bkqs,bksh->bkqh", ops.cast(probs, value.dtype), value)

    def backward_operands(self, layout):
        # Values transposed, (b, k, h, s), for dO V^T (only the backward pass needs them).
        return layout.key, ops.transpose(layout.value, (0, 1, 3, 2))

    def bucket_operands(self, operands, keys):
        key, value_t = operands
        return key[:, :, :keys], value_t[..., :keys]

    def zero_gradient(self, layout, operands):
        """A bucket's key or value gradient before any block, (b, k, h, keys),
        summed in float32."""
        return ops.zeros(ops.shape(operands[1]), layout.sum_dtype)  # values' shape, transposed

    def backward_block(self, layout, operands, query, d_out, out, probs, grad_key, grad_value):
        """One block's share of the gradients: (grad_key, grad_value) updated, d_query."""
        key, value_t = operands
        dtype, f32 = layout.dtype, layout.sum_dtype
        # Softmax backward: d_logits = p * (dp - <d_out, out>) row by row, in float32.
        row_dot = ops.sum(ops.cast(d_out, f32) * ops.cast(out, f32), axis=-1, keepdims=True)
        d_probs = ops.cast(ops.einsum("bkqh,bkhs->bkqs", d_out, value_t), f32)
        d_logits = ops.cast(ops.cast(probs, f32) * (d_probs - row_dot), dtype)
        probs = ops.cast(probs, dtype)
        grad_value = grad_value + ops.cast(ops.einsum("bkqh,bkqs->bkhs", d_out, probs), f32)
        grad_key = grad_key + ops.cast(ops.einsum("bkqh,bkqs->bkhs", query, d_logits), f32)
        d_query = ops.cast(ops.einsum("bkqs,bksh->bkqh", d_logits, key), f32) * layout.scale
        return grad_key, grad_value, ops.cast(d_query, dtype)

    def pad_keys(self, grad, missing):
        """A bucket's gradient over its first keys, zero-padded over `missing` more."""
        return ops.pad(grad, [(0, 0), (0, 0), (0, 0), (0, missing)])

    def to_inputs(self, grad):
        """(b, k, h, s) -> (b, s, k, h), the layout of the key and value inputs."""
        return ops.transpose(grad, (0, 3, 1, 2))


QUERY_MAJOR = QueryMajorProducts()


def _scan(layout, step, init, inputs):
    """The loop over blocks; a single block skips the loop and its overhead."""
    if inputs[0].shape[0] == 1:
        carry, out = step(init, [x[0] for x in inputs])
        if isinstance(out, tuple):
            return carry, tuple(ops.expand_dims(o, 0) for o in out)
        return carry, ops.expand_dims(out, 0)
    return layout.scan(step, init, inputs)


def _unpack(layout, inputs, count):
    """Splits a step's inputs into (tensors..., row offset, mask or None, rest...)."""
    mask = inputs[count + 1] if layout.mask is not None else None
    rest = inputs[count + 1 + (layout.mask is not None):]
    return (*inputs[:count], inputs[count], mask, *rest)


def forward(layout, keep=False):
    """The output in blocks, (n, b, k, q, h), and the kept probabilities.

    With `keep`, buckets that the plan marks as kept also return their
    probabilities (in the products' logits layout) for `backward`; the list
    holds None for the others (and for every bucket without `keep`).
    """
    products = layout.products
    outputs, kept = [], []
    for first, end, keys, keep_bucket in layout.plan.buckets:
        value = layout.value[:, :, :keys]
        keep_bucket = keep and keep_bucket

        def step(carry, inputs, keys=keys, value=value, keep_bucket=keep_bucket):
            query, start, mask = _unpack(layout, inputs, 1)
            probs = products.probabilities(layout, query, start, mask, keys)
            out = products.weighted_values(probs, value)
            # Kept in the inputs' dtype: half the memory under a half-precision policy.
            return carry, ((out, ops.cast(probs, layout.dtype)) if keep_bucket else out)

        inputs = layout.bucket_inputs(first, end, keys, layout.query)
        _, out = _scan(layout, step, ops.zeros(()), inputs)
        if keep_bucket:
            out, probs = out
        outputs.append(out)
        kept.append(probs if keep_bucket else None)
    output = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=0)
    return output, kept


def backward(layout, output, grad_output, kept=None):
    """Gradients (query, key, value) in the inputs' layouts, given d(output).

    `kept` is `forward`'s list of kept probabilities (None: recompute all).
    """
    products = layout.products
    grad_output = layout.to_blocks(grad_output)  # (n, b, k, q, h)
    kept = kept or [None] * len(layout.plan.buckets)
    source = layout.key.shape[2]
    operands = products.backward_operands(layout)
    grad_query, grad_key, grad_value = [], None, None
    for (first, end, keys, _), probs_kept in zip(layout.plan.buckets, kept, strict=True):
        bucket_operands = products.bucket_operands(operands, keys)
        reuse = probs_kept is not None

        def step(carry, inputs, keys=keys, bucket_operands=bucket_operands, reuse=reuse):
            query, d_out, out, start, mask, *rest = _unpack(layout, inputs, 3)
            if reuse:
                probs = rest[0]
            else:
                probs = products.probabilities(layout, query, start, mask, keys)
            grad_key, grad_value, d_query = products.backward_block(
                layout, bucket_operands, query, d_out, out, probs, *carry
            )
            return (grad_key, grad_value), d_query

        zeros = products.zero_gradient(layout, bucket_operands)
        inputs = layout.bucket_inputs(first, end, keys, layout.query, grad_output, output)
        if reuse:
            inputs.append(probs_kept)
        (d_key, d_value), d_query = _scan(layout, step, (zeros, zeros), inputs)
        if keys < source:  # a causal bucket touches only the first `keys` positions
            d_key = products.pad_keys(d_key, source - keys)
            d_value = products.pad_keys(d_value, source - keys)
        grad_key = d_key if grad_key is None else grad_key + d_key
        grad_value = d_value if grad_value is None else grad_value + d_value
        grad_query.append(d_query)
    grad_query = grad_query[0] if len(grad_query) == 1 else ops.concatenate(grad_query, axis=0)
    return (
        layout.from_blocks(grad_query),
        ops.cast(products.to_inputs(grad_key), layout.dtype),
        ops.cast(products.to_inputs(grad_value), layout.dtype),
    )
