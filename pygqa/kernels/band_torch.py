"""PyTorch: band attention as one fused SDPA call per block of query rows.

Block rows a .. e-1 can only meet keys max(0, a - window + 1) .. e + window - 2
(causal: .. e - 1), so each call gets that key slice (a view, no copy) and the
band as a small (rows, keys) mask: work and memory grow linearly with the
length, every call stays on SDPA's fused CPU kernel (which also keeps the
backward pass memory-efficient), and autograd differentiates it.
"""

import numpy as np
import torch
import torch.nn.functional as F

from pygqa.kernels import band

# Query rows per SDPA call. Larger blocks mean fewer calls but more keys
# computed outside the band: a block of R rows meets R + 2(window - 1) keys
# (causal: R + window - 1) for R x 2window (window) useful pairs. See
# benchmarks/README.md ("Sliding window") for the measured choice.
ROWS = 256


def attention(query, key, value, *, window, mask=None, causal=False):
    band.check_window(window)
    target, source = query.shape[1], key.shape[1]
    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is not None:
        mask = torch.broadcast_to(mask.to(torch.bool), (mask.shape[0], target, source))
    outputs = []
    for first in range(0, target, ROWS):
        end = min(target, first + ROWS)
        low = max(0, first - window + 1)
        high = min(source, end if causal else end + window - 1)
        if high <= low:  # no key reaches these rows
            outputs.append(q.new_zeros((q.shape[0], q.shape[1], end - first, v.shape[-1])))
            continue
        rows = np.arange(first, end)[:, None]
        cols = np.arange(low, high)[None, :]
        keep = np.abs(rows - cols) < window
        if causal:
            keep &= cols <= rows
        keep = torch.from_numpy(keep).to(q.device)  # (r, keys)
        if mask is not None:
            keep = keep & mask[:, first:end, low:high]  # (b, r, keys)
        has_key = keep.any(-1, keepdim=True)  # (b or 1, r, 1)
        # Rows without any key are opened (SDPA cannot normalise them) and zeroed after.
        keep = keep | ~has_key
        out = F.scaled_dot_product_attention(
            q[:, :, first:end], k[:, :, low:high], v[:, :, low:high],
            attn_mask=keep.unsqueeze(-3), enable_gqa=grouped,
        )  # (b, u, r, h)
        if not bool(has_key.all()):
            out = out * has_key.unsqueeze(-3).to(out.dtype)
        outputs.append(out)
    return torch.cat(outputs, dim=2).transpose(1, 2)  # (b, t, u, h)


def attention_one_call(query, key, value, *, window, mask=None, causal=False):
    """The same function as one SDPA call with the full (T, S) band mask (quadratic)."""
    target, source = query.shape[1], key.shape[1]
    rows, cols = np.arange(target)[:, None], np.arange(source)[None, :]
    keep = np.abs(rows - cols) < window
    if causal:
        keep &= cols <= rows
    keep = torch.from_numpy(keep).to(query.device)[None]  # (1, t, s)
    if mask is not None:
        keep = keep & mask.to(torch.bool)
    has_key = keep.any(-1)  # (b or 1, t)
    keep = keep | ~has_key[..., None]
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None],
                                         enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2) * has_key[:, :, None, None].to(out.dtype)
