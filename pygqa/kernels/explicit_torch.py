"""The explicit path on torch: the same softmax(Q K^T) V, in two large buffers instead of four.

torch's CPU allocator hands every large tensor back to the system when it is
freed, so each (batch, heads, T, S) tensor costs its size in fresh pages again
on the next call: with scores at 1x2048 (8 query heads), the four such tensors
of a forward+backward step (logits, probabilities, their two gradients) were
131,000 page faults, about a third of the step's time, in Keras's layer and in
the generic explicit path alike. This kernel keeps two:

- forward: the logits become the probabilities in place;
- backward: the probabilities' gradient becomes the logits' gradient in place.

torch's own softmax kernels do the work, so the results are bit-identical to
the generic path's (explicit.py): same scale, mask value, empty-row rule and
dtypes. On a GPU, whose caching allocator reuses memory anyway, the softmax
steps run out of place (their in-place use was verified on CPU kernels only).
Dropout and the soft cap stay on the generic path.

Letters as in explicit.py: b batch, t target, s source, u query head, k
key/value head, g query heads per key/value head, q = (g, t) stacked rows,
h head feature.
"""

import torch
from torch.autograd.function import once_differentiable

from pygqa.kernels.numerics import MASKED_LOGIT


def attention(query, key, value, keep=None):
    """(output (b, t, u, h), probabilities (b, u, t, s)).

    Args:
        query: (b, t, u, h), already multiplied by the logit scale.
        key, value: (b, s, k, h).
        keep: None or a boolean (b or 1, t, s) mask, True keeps a key, the
            causal mask already folded in. Rows left without a key get zero
            probabilities.
    """
    batch, target, num_heads, head_dim = query.shape
    source, num_kv_heads = key.shape[1], key.shape[2]
    if keep is not None:  # masks built from query or key masks alone broadcast along an axis
        keep = keep.expand(keep.shape[0], target, source)
    stacked = query.transpose(1, 2).reshape(batch, num_kv_heads, -1, head_dim)  # (b, k, q, h)
    output, probs = _GroupedSoftmaxAttention.apply(
        stacked, key.transpose(1, 2), value.transpose(1, 2), keep)  # (b, k, q, h), (b, k, q, s)
    output = output.reshape(batch, num_heads, target, head_dim).transpose(1, 2)  # (b, t, u, h)
    return output, probs.reshape(batch, num_heads, target, source)


class _GroupedSoftmaxAttention(torch.autograd.Function):
    """softmax(q k^T) v per key/value head over its group's stacked query rows."""

    @staticmethod
    def forward(ctx, query, key, value, keep):  # (b, k, q, h), (b, k, s, h) x2, mask
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros
        probs = torch.matmul(query, key.transpose(-1, -2))  # the logits, (b, k, q, s)
        if keep is not None:
            rows = probs.view(*probs.shape[:2], -1, *keep.shape[-2:])  # (b, k, g, t, s)
            dropped = ~keep[:, None, None]  # (b, 1, 1, t, s)
            rows.masked_fill_(dropped, MASKED_LOGIT)
        _softmax_in_place(probs)
        if keep is not None:
            rows.masked_fill_(dropped, 0.0)  # rows without a key: zero, not uniform
        output = torch.matmul(probs, value)  # (b, k, q, h)
        ctx.save_for_backward(query, key, value, probs)
        return output, probs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_probs):
        query, key, value, probs = ctx.saved_tensors
        if grad_output is None:  # only the probabilities reached the loss
            grad = grad_probs.clone()
            grad_value = None
        else:
            grad = torch.matmul(grad_output, value.transpose(-1, -2))  # dP, (b, k, q, s)
            if grad_probs is not None:
                grad.add_(grad_probs)
            grad_value = torch.matmul(probs.transpose(-1, -2), grad_output)  # (b, k, s, h)
        # dP becomes the logits' gradient P * (dP - rowsum(dP * P)) in place. Masked keys
        # have P == 0, so their gradient is zero without looking at the mask again.
        _softmax_backward_in_place(grad, probs)
        grad_query = torch.matmul(grad, key)  # (b, k, q, h)
        grad_key = torch.matmul(grad.transpose(-1, -2), query)  # (b, k, s, h)
        return grad_query, grad_key, grad_value, None


def _softmax_in_place(logits):
    if logits.device.type == "cpu":
        # The CPU kernel reads each row whole before writing it, so it may write over its input.
        torch.softmax(logits, -1, out=logits)
    else:  # not verified on GPU kernels; their caching allocator reuses memory anyway
        logits.copy_(torch.softmax(logits, -1))


def _softmax_backward_in_place(grad, probs):
    if grad.device.type == "cpu":
        # The CPU kernel sums each row before writing it, in float32 for half inputs.
        torch.ops.aten._softmax_backward_data.out(grad, probs, -1, probs.dtype, grad_input=grad)
    else:
        grad.copy_(torch.ops.aten._softmax_backward_data(grad, probs, -1, probs.dtype))
