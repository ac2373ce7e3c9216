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
        layout = blockwise.Layout(query, key, value, mask, causal, plan)
        output = blockwise.forward(layout)

        def gradient(grad_output):
            return blockwise.backward(layout, output, grad_output)

        return layout.from_blocks(output), gradient

    output = attend(query, key, value)
    return output if has_key is None else zero_empty_rows(output, has_key)
