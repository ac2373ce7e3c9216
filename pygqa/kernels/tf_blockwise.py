"""TensorFlow: blockwise attention with a custom gradient (see blockwise.py).

From 2048 keys on, TensorFlow with Eigen's products runs each block's products
with its logits laid out (b, k, s, q), keys first (`KeyMajorProducts`);
shorter calls, and every call where TensorFlow uses oneDNN, take blockwise.py's
query-major ones. The blocks, buckets, kept probabilities and
loop are blockwise.py's in both cases.
"""

import functools

import tensorflow as tf

# Whether a gradient tape records these tensors (TF >= 2.13 keeps this here;
# there is no public equivalent). It decides, when the function is traced,
# whether the forward pass keeps probabilities for a backward pass.
from tensorflow.python.eager.record import should_record_backprop

from pygqa.kernels import blockwise
from pygqa.kernels.numerics import MASKED_LOGIT, prepare, zero_empty_rows

# Blocks sized from this machine's last-level cache (see blockwise.cache_block_elements),
# read once at import. JAX keeps blockwise's constant: only TensorFlow was measured.
_BLOCK_ELEMENTS = blockwise.cache_block_elements()

# Blocks the loop may run at once. With two in flight, one block's products
# overlap the previous block's elementwise work and its gradient sums (the
# only dependence between blocks): 1.0-1.15x at 1 x 2048 and 1 x 4096 on 2
# cores, for the memory of one more block.
_PARALLEL_ITERATIONS = 2

# From this many keys on, blocks use the key-major products (KeyMajorProducts),
# with 256 stacked query rows per block (64 positions of a 4-head group), where
# TensorFlow runs Eigen's products. Measured with Eigen (AMD EPYC, AVX2) at 2048
# and 4096 keys (faster); at 512 and 128 keys the query-major ones were faster.
# With oneDNN (Intel Xeon, AMX) query-major won at 2048 and 4096 keys too, fwd
# 1.45x / 1.95x and fwd+bwd 1.22x / 1.26x faster than key-major.
KEY_MAJOR_MIN_KEYS = 2048
_KEY_MAJOR_STACKED_ROWS = 256


def attention(query, key, value, *, mask=None, causal=False):
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    products, max_rows = choose_products(key.shape[1], query.shape[2] // key.shape[2])
    plan = blockwise.plan_blocks(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], causal, _BLOCK_ELEMENTS, max_rows)
    keep = should_record_backprop([query, key, value])

    @tf.custom_gradient
    def attend(query, key, value):
        layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan, products)
        output, kept = blockwise.forward(layout, keep=keep)

        def gradient(grad_output):
            return blockwise.backward(layout, output, grad_output, kept)

        return layout.from_blocks(output), gradient

    output = attend(query, key, value)
    return output if has_key is None else zero_empty_rows(output, has_key)


def choose_products(source_length, group):
    """(products, max rows per block) for a call with this many keys and query
    heads per key/value head."""
    if (source_length is not None and source_length >= KEY_MAJOR_MIN_KEYS
            and not uses_onednn()):
        return KEY_MAJOR, key_major_rows(group)
    return blockwise.QUERY_MAJOR, None


@functools.cache
def uses_onednn():
    """Whether TensorFlow runs oneDNN's kernels (TF_ENABLE_ONEDNN_OPTS, else its own
    default for this CPU), read once."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def key_major_rows(group):
    """Query positions per key-major block: 256 stacked rows over a group of heads."""
    return max(16, _KEY_MAJOR_STACKED_ROWS // group)


def _scan(step, init, inputs):
    """A sequential scan with at most `_PARALLEL_ITERATIONS` blocks in flight
    (so that many blocks' memory).

    `step` returns one tensor or a tuple of tensors per block. The first comes
    back stacked along a new first axis; further ones (kept probabilities)
    stay in their TensorArrays, which this scan also takes as inputs: stacking
    and unstacking them would copy every kept probability twice.
    """
    count = tf.shape(inputs[0])[0]
    arrays = [
        x if isinstance(x, tf.TensorArray)
        else tf.TensorArray(x.dtype, size=count, element_shape=x.shape[1:]).unstack(x)
        for x in inputs
    ]
    # The first block runs before the loop: its outputs give the TensorArrays
    # their number, dtypes and shapes.
    carry, first = step(init, [array.read(0) for array in arrays])
    single = not isinstance(first, tuple)
    first = (first,) if single else first
    outputs = tuple(
        tf.TensorArray(x.dtype, size=count, element_shape=x.shape).write(0, x) for x in first
    )

    def body(i, carry, outputs):
        carry, out = step(carry, [array.read(i) for array in arrays])
        out = (out,) if single else out
        return i + 1, carry, tuple(o.write(i, x) for o, x in zip(outputs, out, strict=True))

    _, carry, outputs = tf.while_loop(
        lambda i, *_: i < count, body, (1, carry, outputs),
        parallel_iterations=_PARALLEL_ITERATIONS,
    )
    stacked = outputs[0].stack()
    return carry, stacked if single else (stacked, *outputs[1:])


class KeyMajorProducts:
    """A block's products with its logits laid out (b, k, s, q), keys first.

    Eigen's matrix products (TensorFlow's CPU kernels where oneDNN is off, as
    on AMD CPUs without AVX-512) ran the long-and-thin shapes of attention
    faster this way round. On an AMD EPYC (Zen 3, AVX2), one 4096 x 256 x 64
    product of keys and a block's query rows ran ~2x faster than 256 x 4096 x
    64, and the key and value gradients come out as (s x q) x (q x h)
    products, the fastest form measured. Side by side, the whole kernel's
    fwd+bwd ran 1.04-1.18x faster at 1 x 2048 and 1.20-1.33x at 1 x 4096
    (benchmarks/README.md, "TensorFlow: where the time went").
    Every product is a `tf.linalg.matmul` whose transposes are flags, so no
    operand is copied to line it up.
    """

    def prepare(self, layout):
        pass  # keys and values are read as (b, k, s, h)

    def probabilities(self, layout, query, start, mask, keys):
        """One block's attention probabilities, (b, k, keys, q)."""
        logits = tf.linalg.matmul(layout.key[:, :, :keys], query, transpose_b=True)
        keep = layout.keep_mask(start, mask, keys)  # (b or 1, r, keys)
        if keep is not None:
            shape = tf.shape(logits)
            grouped = tf.reshape(
                logits, (-1, layout.kv_heads, keys, layout.group, layout.plan.rows)
            )
            keep = tf.transpose(keep, (0, 2, 1))[:, None, :, None, :]  # (b, 1, keys, 1, r)
            grouped = tf.where(keep, grouped, tf.cast(MASKED_LOGIT, logits.dtype))
            logits = tf.reshape(grouped, shape)
        # Softmax over the keys (axis -2): tf.nn.softmax would transpose to the last axis.
        exp = tf.exp(logits - tf.reduce_max(logits, axis=-2, keepdims=True))
        return exp * tf.math.reciprocal(tf.reduce_sum(exp, axis=-2, keepdims=True))

    def weighted_values(self, probs, value):
        """(b, k, keys, q) probabilities x (b, k, keys, h) values -> (b, k, q, h)."""
        # As (h x s) x (s x q), then the small (h, q) result transposed: faster
        # than the (q x s) x (s x h) product read across the probabilities.
        return tf.transpose(tf.linalg.matmul(value, probs, transpose_a=True), (0, 1, 3, 2))

    def backward_operands(self, layout):
        return layout.key, layout.value

    def bucket_operands(self, operands, keys):
        return tuple(x[:, :, :keys] for x in operands)

    def zero_gradient(self, layout, operands):
        """A bucket's key or value gradient before any block, (b, k, keys, h)."""
        return tf.zeros_like(operands[1])  # shaped like the bucket's values

    def backward_block(self, layout, operands, query, d_out, out, probs, grad_key, grad_value):
        """One block's share of the gradients: (grad_key, grad_value) updated, d_query."""
        key, value = operands
        # Softmax backward: d_logits = p * (dp - <d_out, out>), per query row (axis -1 here).
        row_dot = tf.reduce_sum(d_out * out, axis=-1)[:, :, None, :]  # (b, k, 1, q)
        d_probs = tf.linalg.matmul(value, d_out, transpose_b=True)  # (b, k, keys, q)
        d_logits = probs * (d_probs - row_dot)
        grad_value = grad_value + tf.linalg.matmul(probs, d_out)  # (b, k, keys, h)
        grad_key = grad_key + tf.linalg.matmul(d_logits, query)
        d_query = tf.linalg.matmul(key, d_logits, transpose_a=True)  # (b, k, h, q)
        return grad_key, grad_value, tf.transpose(d_query, (0, 1, 3, 2)) * layout.scale

    def pad_keys(self, grad, missing):
        """A bucket's gradient over its first keys, zero-padded over `missing` more."""
        return tf.pad(grad, [(0, 0), (0, 0), (0, missing), (0, 0)])

    def to_inputs(self, grad):
        """(b, k, s, h) -> (b, s, k, h), the layout of the key and value inputs."""
        return tf.transpose(grad, (0, 2, 1, 3))


KEY_MAJOR = KeyMajorProducts()
