"""Query rows in blocks: the layout the blockwise and band kernels share.

A call's T query positions are cut into `num_blocks` blocks of R rows (the
last one padded), and within a block the query heads of each group are
stacked against their shared key/value head: block n of key/value head k is
one (G * R, h) matrix, so each of its products is one larger matrix product.
The kernels' Layout classes (blockwise.py, band_blocks.py) add what their
keys need: blockwise's causal buckets of key columns, band's key windows.

Letters: n block, b batch, k key/value head, g query head in its group,
r row in a block, q a block's stacked (group, row) rows, h head feature.
"""

import math

from keras import ops
from keras.backend import standardize_dtype


class QueryBlocks:
    """A call's sizes and its query rows in blocks of `plan.rows` positions.

    `plan` is the kernel's block plan; only its `rows` and `num_blocks` are
    read here.
    """

    def __init__(self, query, key, plan):
        self.plan = plan
        _, self.target, self.heads, self.head_dim = query.shape
        self.kv_heads = key.shape[2]
        self.group = self.heads // self.kv_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        # Half-precision inputs reach the kernels only where the CPU multiplies them
        # natively (paths.choose_path): the products then run in the inputs' dtype,
        # the softmax, its backward pass and the gradients' sums in `sum_dtype`
        # (float32). With float32 inputs every cast is a no-op.
        self.dtype = query.dtype
        half = standardize_dtype(query.dtype) in ("float16", "bfloat16")
        self.sum_dtype = "float32" if half else self.dtype

    def scaled(self, query):
        """The query times 1/sqrt(head_dim), scaled in `sum_dtype` and rounded once."""
        return ops.cast(ops.cast(query, self.sum_dtype) * self.scale, self.dtype)

    def to_blocks(self, x):
        """(b, t, u, h) -> (n, b, k, g * r, h), rows padded to whole blocks."""
        rows, blocks = self.plan.rows, self.plan.num_blocks
        x = ops.pad(x, [(0, 0), (0, rows * blocks - self.target), (0, 0), (0, 0)])
        x = ops.reshape(x, (-1, blocks, rows, self.kv_heads, self.group, self.head_dim))
        x = ops.transpose(x, (1, 0, 3, 4, 2, 5))  # (n, b, k, g, r, h)
        return ops.reshape(x, (blocks, -1, self.kv_heads, self.group * rows, self.head_dim))

    def from_blocks(self, x):
        """(n, b, k, g * r, h) -> (b, t, u, h); any leading axes that split n
        (the band's (steps, m)) are read as n too."""
        rows, blocks = self.plan.rows, self.plan.num_blocks
        x = ops.reshape(x, (blocks, -1, self.kv_heads, self.group, rows, self.head_dim))
        x = ops.transpose(x, (1, 0, 4, 2, 3, 5))  # (b, n, r, k, g, h)
        x = ops.reshape(x, (-1, blocks * rows, self.heads, self.head_dim))
        return x[:, : self.target]
