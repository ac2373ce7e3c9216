"""TensorFlow: band attention (band_blocks.py) with a custom gradient."""

import tensorflow as tf

from pygqa.kernels import band_blocks
from pygqa.kernels.numerics import zero_empty_rows


def attention(query, key, value, *, window, mask=None, causal=False):
    band_blocks.check_window(window)
    plan = band_blocks.plan_band(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], int(window), causal)
    keep, has_key = band_blocks.keep_blocks(mask, plan)

    @tf.custom_gradient
    def attend(query, key, value):
        layout = band_blocks.Layout(query, key, value, keep, plan, _map)
        output = band_blocks.forward(layout)

        def gradient(grad_output):
            return band_blocks.backward(layout, output, grad_output)

        return layout.from_blocks(output), gradient

    # Zeroing empty rows outside the custom gradient also zeroes their output
    # gradients, which is what band_blocks.backward expects.
    return zero_empty_rows(attend(query, key, value), has_key)


def _map(step, inputs):
    """A strictly sequential loop (one step in flight, so one step's memory)."""
    count = inputs[0].shape[0]
    arrays = [tf.TensorArray(x.dtype, size=count, element_shape=x.shape[1:]).unstack(x)
              for x in inputs]
    # The first step runs before the loop: its outputs give the TensorArrays
    # their dtypes and shapes.
    first = step(*[array.read(0) for array in arrays])
    outputs = tuple(tf.TensorArray(x.dtype, size=count, element_shape=x.shape).write(0, x)
                    for x in first)

    def body(i, outputs):
        out = step(*[array.read(i) for array in arrays])
        return i + 1, tuple(o.write(i, x) for o, x in zip(outputs, out, strict=True))

    _, outputs = tf.while_loop(lambda i, _: i < count, body, (1, outputs),
                               parallel_iterations=1)
    return tuple(o.stack() for o in outputs)
