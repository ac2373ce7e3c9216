"""PyTorch: band attention as one fused SDPA call per block of query rows.

Block n (rows nR .. nR+R-1) can only meet key chunks n-c .. n+c of R positions,
c = ceil((window - 1) / R) (causal: n-c .. n), so each call gets those chunks
and the band as a small (rows, keys) mask: work and memory grow linearly with the
length, every call stays on SDPA's fused CPU kernel (which also keeps the
backward pass memory-efficient), and autograd differentiates it.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from pygqa.kernels import band_blocks

# Query rows per SDPA call. Larger blocks mean fewer calls but more keys
# computed outside the band: a block of R rows meets R + 2(window - 1) keys
# (causal: R + window - 1) for R x 2window (window) useful pairs. See
# benchmarks/README.md ("Sliding window") for the measured choice.
ROWS = 256


def attention(query, key, value, *, window, mask=None, causal=False):
    band_blocks.check_window(window)
    target, source = query.shape[1], key.shape[1]
    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is not None:
        mask = torch.broadcast_to(mask.to(torch.bool), (mask.shape[0], target, source))
    # Query blocks and key chunks of ROWS positions, cut with split and joined
    # with cat: their backward passes are one cat / one slice each. Slicing
    # each block out of the whole tensor instead makes autograd build a
    # zero-filled full-size gradient per block (quadratic; measured 2x slower
    # at 4096).
    rows = min(ROWS, target)
    reach = math.ceil((window - 1) / rows)  # chunks a block meets on each side
    key_chunks, value_chunks = k.split(rows, dim=2), v.split(rows, dim=2)
    outputs = []
    for n, q_block in enumerate(q.split(rows, dim=2)):
        first_chunk = max(0, n - reach)
        last_chunk = min(len(key_chunks) - 1, n if causal else n + reach)
        start, end = n * rows, n * rows + q_block.shape[2]
        if last_chunk < first_chunk:  # no key reaches these rows
            outputs.append(q_block.new_zeros(q_block.shape[:3] + (v.shape[-1],)))
            continue
        low, high = first_chunk * rows, min(source, (last_chunk + 1) * rows)
        positions = np.arange(start, end)[:, None]
        cols = np.arange(low, high)[None, :]
        keep = np.abs(positions - cols) < window
        if causal:
            keep &= cols <= positions
        keep = torch.from_numpy(keep).to(q.device)[None]  # (1, r, keys)
        if mask is not None:
            keep = keep & mask[:, start:end, low:high]  # (b, r, keys)
        has_key = keep.any(-1, keepdim=True)  # (b or 1, r, 1)
        # Rows without any key are opened (SDPA cannot normalise them) and zeroed after.
        keep = keep | ~has_key
        out = F.scaled_dot_product_attention(
            q_block,
            torch.cat(key_chunks[first_chunk : last_chunk + 1], dim=2),
            torch.cat(value_chunks[first_chunk : last_chunk + 1], dim=2),
            # A 4-d mask: with a 3-d one SDPA's CPU dispatch picks the math backend.
            attn_mask=keep[:, None], enable_gqa=grouped,
        )  # (b, u, r, h)
        if not bool(has_key.all()):
            out = out * has_key[:, None].to(out.dtype)
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
