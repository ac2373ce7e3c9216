"""TensorFlow: blockwise attention with a custom gradient (see blockwise.py)."""

import tensorflow as tf

from pygqa.kernels import blockwise
from pygqa.kernels.masking import prepare, zero_empty_rows


def attention(query, key, value, *, mask=None, causal=False):
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    plan = blockwise.plan_blocks(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], causal)

    @tf.custom_gradient
    def attend(query, key, value):
        layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan)
        output = blockwise.forward(layout)

        def gradient(grad_output):
            return blockwise.backward(layout, output, grad_output)

        return layout.from_blocks(output), gradient

    output = attend(query, key, value)
    return output if has_key is None else zero_empty_rows(output, has_key)


def _scan(step, init, inputs):
    """A strictly sequential scan (one block in flight, so one block's memory)."""
    count = tf.shape(inputs[0])[0]
    arrays = [
        tf.TensorArray(x.dtype, size=count, element_shape=x.shape[1:]).unstack(x) for x in inputs
    ]
    outputs = tf.TensorArray(inputs[0].dtype, size=count)

    def body(i, carry, outputs):
        carry, out = step(carry, [array.read(i) for array in arrays])
        return i + 1, carry, outputs.write(i, out)

    _, carry, outputs = tf.while_loop(
        lambda i, *_: i < count, body, (0, init, outputs), parallel_iterations=1
    )
    return carry, outputs.stack()
