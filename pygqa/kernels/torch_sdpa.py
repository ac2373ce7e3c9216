"""PyTorch: scaled_dot_product_attention, three ways of calling it (see paths.py).

- `attention`: key/value at their own head count (`enable_gqa=True`); torch
  picks the backend. On CPU its kernels are already blocked and
  memory-efficient; on a GPU this is the flash backend (no mask).
- `attention_cudnn_first`: the same call with the cuDNN backend ranked first.
  cuDNN takes grouped key/value and a mask, but torch's default order (flash,
  memory-efficient, math, cuDNN) sends a masked grouped call to the math
  backend, which repeats key/value and forms every logit.
- `attention_repeated`: key/value repeated to the query's head count, for
  calls that no fused backend takes with grouped key/value (float32, large
  head_dim): the memory-efficient backend then runs instead of math.
"""

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from pygqa.kernels.numerics import prepare, zero_empty_rows

# cuDNN first; the others stay allowed, in torch's own order, should cuDNN
# refuse a call that paths.py expected it to take.
_CUDNN_FIRST = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


def attention(query, key, value, *, mask=None, causal=False):
    return _sdpa(query, key, value, mask, causal)


def attention_cudnn_first(query, key, value, *, mask=None, causal=False):
    if mask is None and causal and query.shape[1] != key.shape[1]:
        # Top-left causal as a dense mask: only T == S is left to the kernel's flag.
        mask = torch.ones((1, query.shape[1], key.shape[1]), dtype=torch.bool,
                          device=query.device)
    with sdpa_kernel(_CUDNN_FIRST, set_priority=True):
        return _sdpa(query, key, value, mask, causal)


def attention_repeated(query, key, value, *, mask=None, causal=False):
    group = query.shape[2] // key.shape[2]
    # Query head i uses key/value head i // group: repeat each head in place.
    key, value = (x.repeat_interleave(group, dim=2) for x in (key, value))  # (b, s, u, h)
    return _sdpa(query, key, value, mask, causal)


def _sdpa(query, key, value, mask, causal):
    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=grouped)
        return out.transpose(1, 2)
    mask, has_key = prepare(mask, causal, query.shape[1], key.shape[1])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=grouped)
    return zero_empty_rows(out.transpose(1, 2), has_key)
