"""Backend-specific attention kernels for the fast path (no scores, no dropout).

Each takes query (b, t, u, h) and key/value (b, s, k, h) at key/value head
width, an optional boolean (b or 1, t, s) mask and a causal flag, and returns
(b, t, u, h) with attention.py's rule for rows that have no key.
"""

import importlib

_MODULES = {
    "torch": "pygqa.kernels.torch_sdpa",
    "jax": "pygqa.kernels.jax_blockwise",
    "tensorflow": "pygqa.kernels.tf_blockwise",
}


def fused_attention_for(backend, target_length=None, source_length=None):
    """The backend's kernel, or None where attention.py's einsum path is used.

    The blockwise kernels need static sequence lengths to plan their blocks.
    """
    module = _MODULES.get(backend)
    if module is None:
        return None
    if backend != "torch" and (target_length is None or source_length is None):
        return None
    return importlib.import_module(module).attention
