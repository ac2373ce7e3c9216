"""JAX: `jax.nn.dot_product_attention`, cuDNN's fused kernel on a GPU.

Key/value go in at their own head count (the function pairs each query head
with its group's key/value head itself) and in the compute dtype: cuDNN takes
only float16/bfloat16 and keeps its softmax in float32. Its
`implementation="xla"` form is the same call computed by XLA; it runs where
there is no GPU, which is how the tests exercise this path on CPU.
"""

import jax

from pygqa.kernels.numerics import prepare, zero_empty_rows


def attention(query, key, value, *, mask=None, causal=False, implementation=None):
    if implementation is None:
        implementation = "cudnn" if jax.default_backend() == "gpu" else "xla"
    target, source = query.shape[1], key.shape[1]
    # The kernel's own causal flag where T == S (cuDNN then skips the masked
    # blocks); otherwise the top-left causal mask goes into the dense mask.
    native_causal = causal and target == source
    if causal and not native_causal and mask is None:
        mask = jax.numpy.ones((1, target, source), bool)
    mask, has_key = prepare(mask, causal, target, source)
    output = jax.nn.dot_product_attention(
        query, key, value,
        mask=None if mask is None else mask[:, None],  # (b, 1, t, s)
        is_causal=native_causal,
        implementation=implementation,
    )
    return output if has_key is None else zero_empty_rows(output, has_key)
