"""torch's explicit kernel: the generic explicit path's numbers, in half its large buffers.

The kernel is plain torch, so it is held to a plain-torch copy of the generic
path (the same einsums, masking and softmax that keras.ops runs on torch) on
every backend's run, bit for bit; on the torch backend the dispatch is also
held to the generic path itself.
"""

import keras
import numpy as np
import pytest
import torch
from helpers import count_calls
from torch.utils._python_dispatch import TorchDispatchMode

from pygqa.kernels import explicit, explicit_torch
from pygqa.kernels.numerics import MASKED_LOGIT

BACKEND = keras.backend.backend()
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MASKS = ("none", "full", "key-only", "empty-rows")
# The loss reads the output, the probabilities, or both.
LOSSES = ("output", "scores", "both")


def _inputs(dtype, mask_kind, batch=2, target=9, source=11, heads=6, kv_heads=2, head_dim=8):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(batch, target, heads, head_dim, generator=gen) / head_dim**0.5
    k, v = (torch.randn(batch, source, kv_heads, head_dim, generator=gen) for _ in range(2))
    masks = {
        "none": None,
        "full": torch.rand(batch, target, source, generator=gen) < 0.6,
        "key-only": (torch.rand(batch, 1, source, generator=gen) < 0.7),  # broadcasts over rows
        "empty-rows": torch.rand(batch, target, source, generator=gen) < 0.6,
    }
    mask = masks[mask_kind]
    if mask_kind == "empty-rows":
        mask[0, 2] = False
        mask[1, :] = False  # a batch row without any key
    return tuple(x.to(DTYPES[dtype]) for x in (q, k, v)), mask


def _generic_in_torch(query, key, value, keep):
    """explicit.probabilities + weighted_values, written in torch."""
    batch, target, heads, head_dim = query.shape
    kv_heads = key.shape[2]
    stacked = query.transpose(1, 2).reshape(batch, kv_heads, -1, head_dim)
    logits = torch.einsum("bkqh,bksh->bkqs", stacked, key.transpose(1, 2))
    logits = logits.reshape(batch, heads, target, -1)
    if keep is not None:
        keep = keep[:, None]
        logits = torch.where(keep, logits, torch.tensor(MASKED_LOGIT, dtype=logits.dtype))
    probs = torch.softmax(logits, -1)
    if keep is not None:
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    stacked = probs.reshape(batch, kv_heads, -1, probs.shape[-1])
    output = torch.einsum("bkqs,bksh->bkqh", stacked, value.transpose(1, 2))
    return output.reshape(batch, heads, target, head_dim).transpose(1, 2), probs


def _run(fn, inputs, keep, loss):
    inputs = [x.clone().requires_grad_() for x in inputs]
    output, probs = fn(*inputs, keep)
    gen = torch.Generator().manual_seed(4)
    weights = [torch.randn(x.shape, generator=gen).to(x.dtype) for x in (output, probs)]
    terms = {"output": [(output, weights[0])], "scores": [(probs, weights[1])]}
    terms["both"] = terms["output"] + terms["scores"]
    sum(((x * w).float().sum() for x, w in terms[loss]), torch.zeros(())).backward()
    return [output, probs] + [x.grad for x in inputs]


NAMES = ("output", "probabilities", "query gradient", "key gradient", "value gradient")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_kernel_equals_the_generic_path_bit_for_bit(dtype, mask_kind, loss):
    inputs, keep = _inputs(dtype, mask_kind)
    expected = _run(_generic_in_torch, inputs, keep, loss)
    got = _run(explicit_torch.attention, inputs, keep, loss)
    for name, g, e in zip(NAMES, got, expected, strict=True):
        if name == "value gradient" and loss == "scores":
            assert g is None or not g.any(), name  # the value never reached the loss
            continue
        assert g.dtype == e.dtype, name
        assert torch.equal(g, e), f"{name}: max difference {(g - e).abs().max().item():.3g}"


def test_rows_without_a_key_get_zero_probabilities_and_gradients():
    inputs, keep = _inputs("float32", "empty-rows")
    output, probs, grad_query, _, _ = _run(explicit_torch.attention, inputs, keep, "both")
    assert not probs[1].any() and not probs[0, :, 2].any()
    assert not output[1].any() and not grad_query[1].any()
    assert torch.isfinite(grad_query).all()


class _LargeAllocations(TorchDispatchMode):
    """Counts op outputs of at least `numel` elements in fresh storage (not a view,
    not written in place or into `out=`), forward and backward alike."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        given = {x.untyped_storage().data_ptr()
                 for x in torch.utils._pytree.tree_leaves((args, kwargs))
                 if isinstance(x, torch.Tensor)}
        for x in torch.utils._pytree.tree_leaves(result):
            if (isinstance(x, torch.Tensor) and x.numel() >= self.numel
                    and x.untyped_storage().data_ptr() not in given):
                self.count += 1
        return result


@pytest.mark.parametrize("mask_kind", ("none", "full"))
def test_a_step_forms_two_logit_sized_tensors_where_the_generic_path_forms_four(mask_kind):
    # Each logit-sized tensor is fresh memory on every call (torch's CPU allocator
    # returns large blocks to the system): at 1x2048 with scores they were a third
    # of the step's time.
    inputs, keep = _inputs("float32", mask_kind)
    logit_size = inputs[0].shape[0] * inputs[0].shape[2] * inputs[0].shape[1] * inputs[1].shape[1]
    counts = {}
    for name, fn in (("kernel", explicit_torch.attention), ("generic", _generic_in_torch)):
        leaves = [x.clone().requires_grad_() for x in inputs]
        with _LargeAllocations(logit_size) as counter:
            output, _ = fn(*leaves, keep)
            output.sum().backward()
        counts[name] = counter.count
    assert counts["kernel"] == 2, counts
    assert counts["generic"] >= 4, counts


def test_the_layer_takes_the_kernel_on_torch_only_without_dropout_or_soft_cap(monkeypatch):
    calls = count_calls(monkeypatch, explicit_torch, "attention")
    rng = np.random.default_rng(0)
    q, k, v = (keras.ops.convert_to_tensor(rng.normal(size=s).astype("float32"))
               for s in [(1, 5, 4, 8), (1, 6, 2, 8), (1, 6, 2, 8)])
    mask = keras.ops.convert_to_tensor(rng.random((1, 5, 6)) < 0.7)
    output, probs = explicit.attention(q, k, v, mask=mask)
    assert calls == ([1] if BACKEND == "torch" else [])
    # On torch: the kernel's numbers are those of explicit.py's keras.ops.
    expected_probs = explicit.probabilities(q, k, mask)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(probs),
                                  keras.ops.convert_to_numpy(expected_probs))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(output),
        keras.ops.convert_to_numpy(explicit.weighted_values(expected_probs, v)))
    explicit.attention(q, k, v, soft_cap=20.0)
    explicit.attention(q, k, v, dropout=0.5, seed_generator=keras.random.SeedGenerator(1))
    assert calls == ([1] if BACKEND == "torch" else [])  # both on the generic path
