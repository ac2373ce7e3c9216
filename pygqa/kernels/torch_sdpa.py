"""PyTorch: scaled_dot_product_attention with key/value at their own head count.

`enable_gqa=True` lets SDPA pair each query head with its group's key/value
head itself; its CPU kernels are already blocked and memory-efficient.
"""

import torch.nn.functional as F

from pygqa.kernels.masking import prepare, zero_empty_rows


def attention(query, key, value, *, mask=None, causal=False):
    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=grouped)
        return out.transpose(1, 2)
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=grouped)
    return zero_empty_rows(out.transpose(1, 2), has_key)
