"""JAX: blockwise attention with a custom VJP (see blockwise.py).

The kernel is jitted with its block plan as a static argument: under an outer
`jax.jit` it is inlined, and eager calls reuse one compiled program per shape
instead of dispatching each block's operations one by one.
"""

from functools import partial

import jax

from pygqa.kernels import blockwise
from pygqa.kernels.numerics import prepare, zero_empty_rows

# Loops over at most this many blocks are unrolled: XLA then takes each block
# as a static slice instead of copying it in and out of a while loop. Side by
# side at the layer level, 4 x 512 (2 blocks) ran 1.16x faster forward+backward;
# 1 x 2048 (8 blocks) gained nothing backward and lost 9% forward. Longer loops
# stay loops, which also keeps compile time independent of the sequence length.
_UNROLL_BLOCKS = 4


def keep_elements():
    """The budget of probabilities kept for the backward pass: none on CPU.

    XLA:CPU gives the kept blocks fresh memory on every call, and its page
    faults cost more than the product and the exp that keeping saves. Kernel
    alone, fwd+bwd, recomputing every block against keeping up to 512 MiB
    (Intel Xeon with AMX, 2 cores, float32, 8 query / 2 key-value heads, 5
    rounds): 1 x 4096 814 against 993 ms (21,000 against 257,000 page faults
    per step), 1 x 2048 221 against 254 ms, 1 x 2048 causal 143 against 150
    ms, 4 x 512 the same (60 against 59 ms). GPUs keep the budget.
    """
    return 0 if jax.default_backend() == "cpu" else blockwise.KEEP_ELEMENTS


def attention(query, key, value, *, mask=None, causal=False):
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    plan = blockwise.plan_blocks(query.shape[0], query.shape[1], key.shape[1],
                                 query.shape[2], causal, keep_elements=keep_elements())
    output = _attend(query, key, value, mask, causal, plan)
    return output if has_key is None else zero_empty_rows(output, has_key)


@partial(jax.jit, static_argnums=(4, 5))
def _attend(query, key, value, mask, causal, plan):
    return _attend_vjp(query, key, value, mask, causal, plan)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _attend_vjp(query, key, value, mask, causal, plan):
    # Without differentiation JAX runs this, which keeps no probabilities.
    layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan)
    return layout.from_blocks(blockwise.forward(layout)[0])


def _forward(query, key, value, mask, causal, plan):
    layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan)
    output, kept = blockwise.forward(layout, keep=True)
    return layout.from_blocks(output), (query, key, value, mask, output, kept)


def _backward(causal, plan, residuals, grad_output):
    query, key, value, mask, output, kept = residuals
    layout = blockwise.Layout(query, key, value, mask, causal, plan, _scan)
    return (*blockwise.backward(layout, output, grad_output, kept), None)


_attend_vjp.defvjp(_forward, _backward)


def _scan(step, init, inputs):
    count = inputs[0].shape[0]
    return jax.lax.scan(step, init, inputs, unroll=count if count <= _UNROLL_BLOCKS else 1)
