"""PyTorch: band attention as one fused SDPA call per block of query rows.

Block n (rows nR .. nR+R-1) can only meet key chunks n-c .. n+c of R positions,
c = ceil((window - 1) / R) (causal: n-c .. n), so each call gets those chunks
and the band as a small (rows, keys) mask: work and memory grow linearly with the
length, every call stays on SDPA's fused CPU kernel (which also keeps the
backward pass memory-efficient), and autograd differentiates it. The blocks
are band_blocks.block_chunks', with R = band_blocks.rows_for(window) as in
the other band kernels; paths.choose_path takes this path where the blocks
compute a small enough share of the square (band_blocks.band_share).
"""

import numpy as np
import torch
import torch.nn.functional as F

from pygqa.kernels import band_blocks


def attention(query, key, value, *, window, mask=None, causal=False):
    band_blocks.check_window(window)
    target, source = query.shape[1], key.shape[1]
    # SDPA wants heads before positions: (b, u, t, h) and (b, k, s, h).
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    grouped = q.shape[1] != k.shape[1]
    if mask is not None:
        mask = torch.broadcast_to(mask.to(torch.bool), (mask.shape[0], target, source))
    rows, blocks = band_blocks.block_chunks(target, source, window, causal)
    # Query blocks and key chunks cut with split and joined with cat: their
    # backward passes are one cat / one slice each. Slicing each block out of
    # the whole tensor instead makes autograd build a zero-filled full-size
    # gradient per block (quadratic; measured 2x slower at 4096).
    key_chunks, value_chunks = k.split(rows, dim=2), v.split(rows, dim=2)
    # Without a mask of the call's own, blocks whose keys sit alike share one
    # band mask: one tensor, which SDPA keeps once for its backward pass.
    shared = {}
    outputs = []
    for q_block, (start, end, first, last) in zip(q.split(rows, dim=2), blocks, strict=True):
        if last < first:  # no key reaches these rows
            outputs.append(q_block.new_zeros(q_block.shape[:3] + (v.shape[-1],)))
            continue
        low, high = first * rows, min(source, (last + 1) * rows)
        if mask is None:
            pattern = (end - start, high - low, start - low)
            if pattern not in shared:
                shared[pattern] = _band_mask(start, end, low, high, window, causal, q)
            bias, has_key = shared[pattern]
        else:
            bias, has_key = _masked_band(mask[:, start:end, low:high], start, end, low, high,
                                         window, causal, q.dtype)
        out = F.scaled_dot_product_attention(
            q_block,
            torch.cat(key_chunks[first : last + 1], dim=2),
            torch.cat(value_chunks[first : last + 1], dim=2),
            attn_mask=bias, enable_gqa=grouped,
        )  # (b, u, r, h)
        if has_key is not None:
            out = out * has_key
        outputs.append(out)
    return torch.cat(outputs, dim=2).transpose(1, 2)  # (b, t, u, h)


def _band_keep(start, end, low, high, window, causal):
    """(rows, keys) numpy bool: the band between query rows start .. end - 1 and
    keys low .. high - 1."""
    positions = np.arange(start, end)[:, None]
    cols = np.arange(low, high)[None, :]
    keep = np.abs(positions - cols) < window
    if causal:
        keep &= cols <= positions
    return keep


def _as_bias(keep, dtype):
    """A boolean keep mask as SDPA's additive mask (0 kept, -inf masked), 4-d: the
    form SDPA makes of a boolean mask itself, made here once per shared mask
    (with a 3-d mask SDPA's CPU dispatch picks the math backend)."""
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return bias.masked_fill_(~keep, float("-inf"))[:, None]  # (b or 1, 1, r, keys)


def _band_mask(start, end, low, high, window, causal, like):
    """The band alone: (additive mask, None or the (1, 1, r, 1) rows with a key),
    in the dtype and on the device of `like`."""
    keep = _band_keep(start, end, low, high, window, causal)
    has_key = keep.any(-1, keepdims=True)  # (r, 1)
    # Rows without any key are opened (SDPA cannot normalise them) and zeroed after.
    keep = torch.from_numpy(keep | ~has_key).to(like.device)[None]  # (1, r, keys)
    if has_key.all():
        return _as_bias(keep, like.dtype), None
    return _as_bias(keep, like.dtype), torch.from_numpy(has_key).to(like)[None, None]


def _masked_band(mask, start, end, low, high, window, causal, dtype):
    """The band ANDed with the call's mask block (b, r, keys): (additive mask,
    (b, 1, r, 1) rows with a key)."""
    keep = torch.from_numpy(_band_keep(start, end, low, high, window, causal))
    keep = keep.to(mask.device)[None] & mask  # (b, r, keys)
    has_key = keep.any(-1, keepdim=True)  # (b, r, 1)
    return _as_bias(keep | ~has_key, dtype), has_key[:, None].to(dtype)

