"""Band attention in blocks: the plan, the key windows, forward and backward passes.

Query position t attends key position s iff |t - s| < window (Keras 3.15's
`sliding_window`), and s <= t when causal, and mask[b, t, s]; positions are
top-left aligned (both count from 0, also when T != S). A query row left with
no key outputs exactly zero (pygqa's rule, numerics.py).

Plan: query rows in blocks of R; key positions in chunks of R. Block n (rows
nR .. nR+R-1) can only meet chunks n-c .. n+c with c = ceil((window-1)/R)
(causal: n-c .. n), so each block meets a window of W = (2c+1)R keys whatever
T and S are: work and memory grow linearly with the length. The windows are
built once as 2c+1 static shifted views of a padded key array (no dynamic
slicing, so every backend sees static shapes), keys outside [0, S) or outside
the band are masked, and the backward pass returns each block's key/value
window gradients, which are overlap-added back with 2c+1 static shifted adds.

Letters: n block, m block within a loop step, b batch, k key/value head,
g query head in its group, r row in a block, q a block's stacked (group, row)
rows, w key position in a block's window, h head feature.

Written once with keras.ops: `band_jax.py` and `band_tf.py` wrap it in each
backend's custom-gradient mechanism and loop, band.py runs it in a Python loop
on other backends; `band_torch.py` calls torch's fused SDPA per query block
instead (and reads only `check_window` here). Query rows are in blocks as
blocks.py lays them out, with the blocks further grouped into loop steps.
"""

import collections
import math

import numpy as np
from keras import ops

from pygqa.kernels.blocks import QueryBlocks
from pygqa.kernels.numerics import MASKED_LOGIT, softmax

# Rows per block, from the window: about (window - 1) / 4, so that a block's
# key window (c = 4 chunks each side) wastes at most ~1/8 (two-sided) or ~1/4
# (causal) of its logits on keys outside the band; a block of R = window would
# waste 1/2 (two-sided) or 1/1 (causal). At least 32 rows keep each matrix
# product big enough to run near the machine's matmul speed, at most 256 keep
# a step's working set in cache-friendly sizes. See benchmarks/README.md
# ("Sliding window") for the measured choice at window 512.
MIN_ROWS = 32
MAX_ROWS = 256
_ROWS_PER_WINDOW = 4

# Logits one loop step may hold, in elements (16 MiB in float32): blocks are
# batched into steps up to this size, so small windows do not pay a loop
# iteration per 32-row block, and large ones stay within a bounded working set.
STEP_ELEMENTS = 1 << 22

# rows: R; num_blocks: blocks after padding T (a multiple of per_step);
# per_step: blocks per loop step; left / right: chunks a block reaches before /
# after its own (right is 0 when causal); the rest: the call it was made for.
Plan = collections.namedtuple(
    "Plan",
    ["rows", "num_blocks", "per_step", "left", "right",
     "target", "source", "window", "causal"],
)


def check_window(window):
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(
            "Received an invalid value for `window`: expected a positive integer. "
            f"Received: window={window!r}"
        )


def rows_for(window):
    """R for a window: ~(window - 1) / 4, a multiple of 16 in [MIN_ROWS, MAX_ROWS]."""
    rows = 16 * math.ceil(math.ceil((window - 1) / _ROWS_PER_WINDOW) / 16)
    return min(MAX_ROWS, max(MIN_ROWS, rows))


def plan_band(batch, target, source, num_query_heads, window, causal, rows=None):
    """The block plan of one call. `rows` overrides R (tests force small blocks)."""
    # The batch only sizes the steps; unknown (None) or symbolic counts as 1.
    batch = batch if isinstance(batch, int) else 1
    rows = min(rows or rows_for(window), target)  # never more rows than the query has
    num_blocks = math.ceil(target / rows)
    reach = math.ceil((window - 1) / rows)
    # No further than the first / last chunk that exists: a window wider than
    # the sequence costs what a full square does, not more.
    left = min(reach, num_blocks - 1)
    right = 0 if causal else min(reach, math.ceil(source / rows) - 1)
    width = (left + 1 + right) * rows
    per_block = batch * num_query_heads * rows * width
    per_step = max(1, min(num_blocks, STEP_ELEMENTS // per_block))
    steps = math.ceil(num_blocks / per_step)
    per_step = math.ceil(num_blocks / steps)  # the same steps, the least padding
    return Plan(rows, steps * per_step, per_step, left, right,
                target, source, window, causal)


def block_chunks(target, source, window, causal, rows=None):
    """Each query block's key chunks, with no padding: the plan of band_torch.py.

    Query rows and key positions both in chunks of R = `rows` (default
    `rows_for(window)`, at most T). Returns R and, per block, (start, end,
    first, last): rows start .. end - 1 meet key chunks first .. last, the
    chunks that exist among the c = ceil((window - 1) / R) before the block
    (and after it, when not causal); first > last where none exists.
    """
    rows = min(rows or rows_for(window), target)
    reach = math.ceil((window - 1) / rows)
    chunks = math.ceil(source / rows)
    blocks = []
    for n in range(math.ceil(target / rows)):
        last = min(chunks - 1, n if causal else n + reach)
        blocks.append((n * rows, min(target, (n + 1) * rows), max(0, n - reach), last))
    return rows, blocks


def band_share(target, source, window, causal):
    """The share of the (T, S) logits that `block_chunks`' blocks compute, in (0, 1]:
    what the band saves against one call over the whole square."""
    rows, blocks = block_chunks(target, source, window, causal)
    logits = sum((end - start) * (min(source, (last + 1) * rows) - first * rows)
                 for start, end, first, last in blocks if first <= last)
    return logits / (target * source)


def width(plan):
    """W, keys in one block's window."""
    return (plan.left + 1 + plan.right) * plan.rows


def padded_source(plan):
    """Length P of the padded key array: chunks -left .. num_blocks - 1 + right."""
    return (plan.num_blocks + plan.left + plan.right) * plan.rows


def static_keep(plan):
    """What the band and the key range allow, (n, r, w) numpy bool; no user mask."""
    rows, cols = np.arange(plan.rows)[:, None], np.arange(width(plan))[None, :]
    offset = cols - plan.left * plan.rows - rows  # key position - query position, any block
    band = np.abs(offset) < plan.window
    if plan.causal:
        band &= offset <= 0
    key_pos = (np.arange(plan.num_blocks)[:, None] - plan.left) * plan.rows + cols  # (n, w)
    exists = (key_pos >= 0) & (key_pos < plan.source)
    return band[None] & exists[:, None, :]


def keep_blocks(mask, plan):
    """The keys each block row may attend, and which query rows keep any key.

    Returns (keep (steps, per_step, batch or 1, r, w) bool tensor,
    has_key (batch or 1, T) bool or None when every row keeps a key).
    """
    keep = static_keep(plan)  # (n, r, w)
    if mask is None:
        has_key = keep.any(-1).reshape(1, -1)[:, : plan.target]  # (1, t)
        keep = ops.convert_to_tensor(keep[:, None])  # (n, 1, r, w)
        has_key = None if has_key.all() else ops.convert_to_tensor(has_key)
    else:
        keep = ops.logical_and(window_mask(mask, plan), keep[:, None])  # (n, b, r, w)
        has_key = ops.any(keep, axis=-1)  # (n, b, r)
        has_key = ops.reshape(ops.transpose(has_key, (1, 0, 2)), (-1, plan.num_blocks * plan.rows))
        has_key = has_key[:, : plan.target]  # (b, t)
    steps = plan.num_blocks // plan.per_step
    keep = ops.reshape(keep, (steps, plan.per_step, -1, plan.rows, width(plan)))
    return keep, has_key


def window_mask(mask, plan):
    """A (batch or 1, T, S) mask cut into block windows, (n, b, r, w).

    Block n's window starts at padded key index nR, so row r of block n needs
    padded columns nR .. nR + W - 1: flattening each row's (n, P) matrix and
    reading it with a row length of P + R shifts row n left by nR ("skewing").
    """
    rows, blocks, wide = plan.rows, plan.num_blocks, width(plan)
    padded, lead = padded_source(plan), plan.left * plan.rows
    mask = ops.cast(mask, "bool")
    mask = ops.broadcast_to(mask, (ops.shape(mask)[0], plan.target, plan.source))
    keys = min(plan.source, padded - lead)  # keys beyond the last window are never met
    mask = ops.pad(mask[:, :, :keys],
                   [(0, 0), (0, blocks * rows - plan.target), (lead, padded - lead - keys)],
                   constant_values=False)  # (b, n*r, P)
    mask = ops.reshape(mask, (-1, blocks, rows, padded))
    mask = ops.reshape(ops.transpose(mask, (0, 2, 1, 3)), (-1, rows, blocks * padded))
    mask = ops.pad(mask, [(0, 0), (0, 0), (0, blocks * rows)], constant_values=False)
    mask = ops.reshape(mask, (-1, rows, blocks, padded + rows))[..., :wide]  # (b, r, n, w)
    return ops.transpose(mask, (2, 0, 1, 3))  # (n, b, r, w)


def python_map(step, inputs):
    """The loop contract (`map(step, inputs) -> stacked outputs`) as a Python loop."""
    outputs = [step(*[x[i] for x in inputs]) for i in range(inputs[0].shape[0])]
    return tuple(ops.stack(o) for o in zip(*outputs))


class Layout(QueryBlocks):
    """Inputs rearranged once so that every loop step is a plain batched product.

    `map(step, inputs)` is the backend's sequential loop: it calls
    `step(*slices)` on each slice along the first axis of every input and
    returns the tuple of step outputs stacked along a new first axis.
    """

    def __init__(self, query, key, value, keep, plan, map_fn):
        super().__init__(query, key, plan)
        self.map = map_fn
        self.steps = plan.num_blocks // plan.per_step
        self.query = self.to_blocks(self.scaled(query))  # (steps, m, b, k, q, h)
        self.key = self.windows(key)  # (steps, m, b, k, w, h)
        self.value = self.windows(value)  # (steps, m, b, k, w, h)
        self.keep = keep  # (steps, m, b or 1, r, w)

    def to_blocks(self, x):
        """(b, t, u, h) -> (steps, m, b, k, g * r, h), rows padded to whole blocks."""
        x = super().to_blocks(x)  # (n, b, k, g * r, h)
        return ops.reshape(x, (self.steps, self.plan.per_step, -1, self.kv_heads,
                               self.group * self.plan.rows, self.head_dim))

    # from_blocks, (steps, m, b, k, g * r, h) -> (b, t, u, h), is QueryBlocks':
    # it reads (steps, m) as the n blocks they split.

    def windows(self, x):
        """(b, s, k, h) -> each block's key window, (steps, m, b, k, w, h).

        The padded array holds chunk -left at index 0, so block n's window is
        padded[nR : nR + W]: view j (j = 0 .. left + right) supplies its j-th
        chunk for every block at once.
        """
        plan, rows = self.plan, self.plan.rows
        padded, lead = padded_source(plan), plan.left * rows
        keys = min(plan.source, padded - lead)
        x = ops.pad(x[:, :keys], [(0, 0), (lead, padded - lead - keys), (0, 0), (0, 0)])
        span = plan.num_blocks * rows
        views = [x[:, j * rows : j * rows + span] for j in range(plan.left + 1 + plan.right)]
        x = ops.stack(views, axis=2)  # (b, n*r, j, k, h)
        x = ops.reshape(x, (-1, plan.num_blocks, rows, len(views), self.kv_heads, self.head_dim))
        x = ops.transpose(x, (1, 0, 4, 3, 2, 5))  # (n, b, k, j, r, h)
        return ops.reshape(x, (self.steps, plan.per_step, -1, self.kv_heads, width(plan),
                               self.head_dim))

    def overlap_add(self, x):
        """Window gradients (steps, m, b, k, w, h) summed back to (b, s, k, h)."""
        plan, rows = self.plan, self.plan.rows
        chunks = plan.left + 1 + plan.right
        x = ops.reshape(x, (plan.num_blocks, -1, self.kv_heads, chunks, rows, self.head_dim))
        # Chunk j of block n is padded chunk n + j: shift it down by j blocks and add.
        total = None
        for j in range(chunks):
            piece = ops.pad(x[:, :, :, j], [(j, chunks - 1 - j), (0, 0), (0, 0), (0, 0), (0, 0)])
            total = piece if total is None else total + piece  # (n + chunks - 1, b, k, r, h)
        total = ops.transpose(total, (1, 0, 3, 2, 4))  # (b, chunk, r, k, h)
        total = ops.reshape(total, (-1, padded_source(plan), self.kv_heads, self.head_dim))
        lead = plan.left * rows
        keys = min(plan.source, padded_source(plan) - lead)
        total = total[:, lead : lead + keys]  # (b, keys, k, h)
        if keys < plan.source:  # keys no window reaches get no gradient
            total = ops.pad(total, [(0, 0), (0, plan.source - keys), (0, 0), (0, 0)])
        return total

    def probabilities(self, query, key, keep):
        """One step's probabilities, (m, b, k, q, w); masked keys get exactly 0.

        A row with no key comes out uniform here; callers zero those rows
        (their outputs forward, their output gradients backward).
        """
        logits = ops.cast(ops.einsum("mbkqh,mbkwh->mbkqw", query, key), self.sum_dtype)
        shape = ops.shape(logits)
        grouped = ops.reshape(logits, (self.plan.per_step, -1, self.kv_heads, self.group,
                                       self.plan.rows, width(self.plan)))  # (m, b, k, g, r, w)
        grouped = ops.where(keep[:, :, None, None], grouped, ops.cast(MASKED_LOGIT, logits.dtype))
        # Softmax on the 5-d shape: TensorFlow's kernel takes at most 5 dimensions.
        return softmax(ops.reshape(grouped, shape))


def forward(layout):
    """The output in blocks, (steps, m, b, k, q, h), before empty rows are zeroed."""

    def step(query, key, value, keep):
        probs = ops.cast(layout.probabilities(query, key, keep), value.dtype)
        return (ops.einsum("mbkqw,mbkwh->mbkqh", probs, value),)

    return _map(layout, step, [layout.query, layout.key, layout.value, layout.keep])[0]


def backward(layout, output, grad_output):
    """Gradients (query, key, value) in the inputs' layouts, given d(output).

    `output` is `forward`'s result; probabilities are recomputed step by step.
    `grad_output` must already be zero on rows without any key (it is when
    the rows are zeroed outside the custom gradient, as the wrappers do).
    """
    grad_output = layout.to_blocks(grad_output)  # (steps, m, b, k, q, h)

    def step(query, key, value, keep, d_out, out):
        dtype, f32 = layout.dtype, layout.sum_dtype
        probs = layout.probabilities(query, key, keep)
        # Softmax backward: d_logits = p * (dp - <d_out, out>) row by row, in float32.
        row_dot = ops.sum(ops.cast(d_out, f32) * ops.cast(out, f32), axis=-1, keepdims=True)
        d_probs = ops.cast(ops.einsum("mbkqh,mbkwh->mbkqw", d_out, value), f32)
        d_logits = ops.cast(probs * (d_probs - row_dot), dtype)
        probs = ops.cast(probs, dtype)
        # Window gradients in float32: overlap_add sums each key's over several windows.
        d_value = ops.cast(ops.einsum("mbkqw,mbkqh->mbkwh", probs, d_out), f32)
        d_key = ops.cast(ops.einsum("mbkqw,mbkqh->mbkwh", d_logits, query), f32)
        d_query = ops.cast(ops.einsum("mbkqw,mbkwh->mbkqh", d_logits, key), f32) * layout.scale
        return ops.cast(d_query, dtype), d_key, d_value

    inputs = [layout.query, layout.key, layout.value, layout.keep, grad_output, output]
    d_query, d_key, d_value = _map(layout, step, inputs)
    return (layout.from_blocks(d_query), ops.cast(layout.overlap_add(d_key), layout.dtype),
            ops.cast(layout.overlap_add(d_value), layout.dtype))


def _map(layout, step, inputs):
    """The loop over steps; a single step skips the loop and its overhead."""
    if layout.steps == 1:
        return tuple(ops.expand_dims(o, 0) for o in step(*[x[0] for x in inputs]))
    return layout.map(step, inputs)
