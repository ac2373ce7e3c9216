"""TensorFlow: blockwise attention with a custom gradient (see blockwise.py)."""

import tensorflow as tf

# Whether a gradient tape records these tensors (TF >= 2.13 keeps this here;
# there is no public equivalent). It decides, when the function is traced,
# whether the forward pass keeps probabilities for a backward pass.
from tensorflow.python.eager.record import should_record_backprop

from pygqa.kernels import blockwise
from pygqa.kernels.masking import prepare, zero_empty_rows

# Blocks sized from this machine's last-level cache (see blockwise.cache_block_elements),
# read once at import. JAX keeps blockwise's constant: only TensorFlow was measured.
_BLOCK_ELEMENTS = blockwise.cache_block_elements()


def attention(query, key, value, *, mask=None, causal=False):
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    plan = blockwise.plan_blocks(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], causal, _BLOCK_ELEMENTS)
    keep = should_record_backprop([query, key, value])

    @tf.custom_gradient
    def attend(query, key, value):
        layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan)
        output, kept = blockwise.forward(layout, keep=keep)

        def gradient(grad_output):
            return blockwise.backward(layout, output, grad_output, kept)

        return layout.from_blocks(output), gradient

    output = attend(query, key, value)
    return output if has_key is None else zero_empty_rows(output, has_key)


def _scan(step, init, inputs):
    """A strictly sequential scan (one block in flight, so one block's memory).

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
        lambda i, *_: i < count, body, (1, carry, outputs), parallel_iterations=1
    )
    stacked = outputs[0].stack()
    return carry, stacked if single else (stacked, *outputs[1:])
