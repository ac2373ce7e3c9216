"""JAX: band attention (band_blocks.py) with a custom VJP, jitted with its plan static.

Under an outer `jax.jit` the kernel is inlined; eager calls reuse one compiled
program per shape.
"""

from functools import partial

import jax

from pygqa.kernels import band_blocks
from pygqa.kernels.numerics import zero_empty_rows

# Loops of at most this many steps are unrolled (static slices instead of a
# while loop), as jax_blockwise.py does; longer ones stay loops, which keeps
# compile time independent of the length.
_UNROLL_STEPS = 4


def attention(query, key, value, *, window, mask=None, causal=False):
    band_blocks.check_window(window)
    plan = band_blocks.plan_band(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], int(window), causal)
    return _attend(query, key, value, mask, plan)


@partial(jax.jit, static_argnums=(4,))
def _attend(query, key, value, mask, plan):
    keep, has_key = band_blocks.keep_blocks(mask, plan)
    # Zeroing empty rows outside the custom VJP also zeroes their output
    # gradients, which is what band_blocks.backward expects.
    return zero_empty_rows(_attend_vjp(query, key, value, keep, plan), has_key)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend_vjp(query, key, value, keep, plan):
    layout = band_blocks.Layout(query, key, value, keep, plan, _map)
    return layout.from_blocks(band_blocks.forward(layout))


def _forward(query, key, value, keep, plan):
    layout = band_blocks.Layout(query, key, value, keep, plan, _map)
    output = band_blocks.forward(layout)
    # Residuals at the inputs' size: the (2c+1)-fold key/value windows are rebuilt.
    return layout.from_blocks(output), (query, key, value, keep, output)


def _backward(plan, residuals, grad_output):
    query, key, value, keep, output = residuals
    layout = band_blocks.Layout(query, key, value, keep, plan, _map)
    return (*band_blocks.backward(layout, output, grad_output), None)


_attend_vjp.defvjp(_forward, _backward)


def _map(step, inputs):
    count = inputs[0].shape[0]
    _, outputs = jax.lax.scan(lambda carry, xs: (carry, step(*xs)), 0, inputs,
                              unroll=count if count <= _UNROLL_STEPS else 1)
    return outputs
