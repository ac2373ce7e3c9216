"""The sliding-window (band) kernel against a float64 numpy reference and autodiff."""

import keras
import numpy as np
import pytest
from gradients import vjp
from helpers import LAYOUTS, to_numpy

from pygqa.kernels import band, band_blocks, explicit

BACKEND = keras.backend.backend()

# float32 sums of at most ~50 products of O(1) terms: a few ulp of the output's
# scale; 2e-6 leaves ~5x headroom over the largest difference seen (4e-7).
ATOL = 2e-6
# Gradients relative to the largest entry (as tests/test_gradients.py).
GRAD_RTOL = 1e-5

# (T, S): equal, shorter and longer query. Odd lengths, so blocks never fit exactly.
LENGTHS = {"t=s": (37, 37), "t<s": (23, 41), "t>s": (45, 19)}
WINDOWS = {"1": 1, "2": 2, "7": 7, "t-1": -1, "t": 0, ">t": 9}  # <= 0: relative to T


def _window(name, target):
    window = WINDOWS[name]
    return window if window > 0 else target + window


def reference(query, key, value, window, mask=None, causal=False):
    """Plain float64 attention with key/value repeated per group and a dense band mask."""
    query, key, value = (np.asarray(x, np.float64) for x in (query, key, value))
    group = query.shape[2] // key.shape[2]
    key, value = np.repeat(key, group, axis=2), np.repeat(value, group, axis=2)
    logits = np.einsum("btuh,bsuh->buts", query, key) / np.sqrt(query.shape[-1])
    keep = dense_keep(query.shape[1], key.shape[1], window, mask, causal)[:, None]  # (b, 1, t, s)
    logits = np.where(keep, logits, -np.inf)
    row_max = logits.max(-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # rows without any key
    weights = np.where(keep, np.exp(logits - row_max), 0.0)
    total = weights.sum(-1, keepdims=True)
    probs = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    return np.einsum("buts,bsuh->btuh", probs, value)


def dense_keep(target, source, window, mask=None, causal=False):
    """(b or 1, t, s): |t - s| < window, s <= t when causal, and the mask."""
    rows, cols = np.arange(target)[:, None], np.arange(source)[None, :]
    keep = np.abs(rows - cols) < window
    if causal:
        keep &= cols <= rows
    keep = keep[None]
    return keep if mask is None else keep & mask


def _inputs(rng, target, source, layout="gqa", batch=2, head_dim=4):
    heads, kv_heads = LAYOUTS[layout]
    query = rng.normal(size=(batch, target, heads, head_dim)).astype("float32")
    key = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    value = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    return query, key, value


@pytest.fixture(params=["blocks", "one-block"])
def plan(request, monkeypatch):
    """Force 16-row blocks (several blocks, several steps) or one block for the whole query.

    Every band kernel takes its rows per block from band_blocks.rows_for (torch's
    per-block SDPA calls too), so the two bounds set them all.
    """
    if request.param == "blocks":
        monkeypatch.setattr(band_blocks, "MIN_ROWS", 16)
        monkeypatch.setattr(band_blocks, "MAX_ROWS", 16)
        monkeypatch.setattr(band_blocks, "STEP_ELEMENTS", 1)  # one block per loop step
    else:
        monkeypatch.setattr(band_blocks, "MIN_ROWS", 64)
    return request.param


@pytest.mark.parametrize("causal", [False, True], ids=["band", "causal"])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_band_equals_reference(plan, lengths, causal, rng):
    target, source = LENGTHS[lengths]
    query, key, value = _inputs(rng, target, source)
    for name in WINDOWS:
        window = _window(name, target)
        out = to_numpy(band.attention(query, key, value, window=window, causal=causal))
        expected = reference(query, key, value, window, causal=causal)
        np.testing.assert_allclose(out, expected, atol=ATOL, rtol=0, err_msg=f"window {name}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_with_a_mask_that_empties_rows(plan, layout, rng):
    target, source = LENGTHS["t>s"]
    query, key, value = _inputs(rng, target, source, layout)
    mask = rng.random((2, target, source)) < 0.6
    mask[0, 5] = False  # a row emptied by the mask alone
    mask[1, 20:26, 14:] = False  # rows the mask and the window empty together
    for causal in (False, True):
        window = 7
        out = to_numpy(band.attention(query, key, value, window=window, mask=mask, causal=causal))
        np.testing.assert_allclose(out, reference(query, key, value, window, mask, causal),
                                   atol=ATOL, rtol=0)
        empty = ~dense_keep(target, source, window, mask, causal).any(-1)  # (b, t)
        assert empty[0, 5] and empty[1, 20:26].all() and empty[:, source + window - 1:].all()
        assert np.all(out[empty] == 0.0)  # exactly zero, not merely small


def test_a_mask_shared_by_the_batch(plan, rng):
    query, key, value = _inputs(rng, 37, 37)
    mask = rng.random((1, 37, 37)) < 0.5
    out = to_numpy(band.attention(query, key, value, window=9, mask=mask, causal=True))
    np.testing.assert_allclose(out, reference(query, key, value, 9, mask, True),
                               atol=ATOL, rtol=0)


def test_every_band_key_is_in_some_window():
    # The plan's windows, scattered back to (T, S), give exactly the dense band:
    # no key inside the band is missed, none outside it is let in.
    for target, source in LENGTHS.values():
        for window in (1, 2, 16, 17, 40, 100):
            for causal in (False, True):
                plan = band_blocks.plan_band(1, target, source, 4, window, causal, rows=16)
                keep = band_blocks.static_keep(plan)  # (n, r, w)
                dense = np.zeros((plan.num_blocks * plan.rows, band_blocks.padded_source(plan)),
                                 bool)
                for n in range(plan.num_blocks):
                    rows = slice(n * plan.rows, (n + 1) * plan.rows)
                    dense[rows, n * plan.rows : n * plan.rows + band_blocks.width(plan)] = keep[n]
                lead = plan.left * plan.rows
                dense = dense[:target, lead : lead + source]
                expected = dense_keep(target, source, window, causal=causal)[0]
                pad = max(0, source - dense.shape[1])  # keys past every window: never kept
                assert np.array_equal(np.pad(dense, [(0, 0), (0, pad)]), expected)


def test_work_grows_linearly_with_the_length():
    # For a fixed window, the keys a block meets do not depend on the length.
    widths = {band_blocks.width(band_blocks.plan_band(1, n, n, 8, 512, True))
              for n in (4096, 8192, 16384)}
    assert widths == {band_blocks.rows_for(512) * (1 + 4)}  # R = 128 and c = 4 chunks before
    plan = band_blocks.plan_band(1, 8192, 8192, 8, 512, False)
    assert band_blocks.width(plan) == 9 * plan.rows and plan.num_blocks * plan.rows >= 8192
    for target in (1, 3, 15):  # a short query is never padded to a whole block
        assert band_blocks.plan_band(4, target, 4096, 8, 512, True).rows == target


@pytest.mark.parametrize("window", [0, -3, 2.5, True, None])
def test_invalid_window_is_rejected(window, rng):
    query, key, value = _inputs(rng, 5, 5)
    with pytest.raises(ValueError, match="`window`"):
        band.attention(query, key, value, window=window)


def _explicit(window, mask, causal, target, source):
    """Autodiff oracle: pygqa's plain masked softmax on the dense band mask."""
    dense = keras.ops.convert_to_tensor(dense_keep(target, source, window, mask, causal))

    def function(query, key, value):
        probs = explicit.probabilities(query, key, dense)
        return explicit.weighted_values(probs, value)

    return function


def _vjp(function, args, cotangent):
    """tests/gradients.vjp, compiled on JAX: op-by-op dispatch of a backward pass is slow."""
    if BACKEND == "jax":
        import jax

        function = jax.jit(function)
    return vjp(function, args, cotangent)


def _close_grads(got, expected):
    scale = max(float(np.abs(e).max()) for e in expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=GRAD_RTOL * scale, rtol=0)


# (lengths, causal, masked, window): every length with a narrow window (one
# chunk each side at 16-row blocks) and a window of T (three chunks), causal
# and two-sided, with and without a mask. A sample rather than the full
# product: on JAX every case compiles two programs.
GRADIENT_CASES = {
    "t=s-two-sided-7": ("t=s", False, False, 7),
    "t=s-causal-mask-T": ("t=s", True, True, 0),
    "t<s-causal-7": ("t<s", True, False, 7),
    "t<s-two-sided-mask-T": ("t<s", False, True, 0),
    "t>s-two-sided-mask-7": ("t>s", False, True, 7),
    "t>s-causal-T": ("t>s", True, False, 0),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_equal_autodiff(plan, case, rng):
    lengths, causal, masked, window = GRADIENT_CASES[case]
    target, source = LENGTHS[lengths]
    window = window or target
    query, key, value = _inputs(rng, target, source)
    d_out = rng.normal(size=query.shape).astype("float32")
    mask = None
    if masked:
        mask = rng.random((2, target, source)) < 0.6
        mask[0, 3] = False  # a row with no key: zero output, zero gradients

    def kernel(q, k, v):
        return band.attention(q, k, v, window=window, mask=mask, causal=causal)

    got = _vjp(kernel, (query, key, value), d_out)
    expected = _vjp(_explicit(window, mask, causal, target, source), (query, key, value), d_out)
    _close_grads(got, expected)


# Compiled as each backend compiles: jax.jit, tf.function, torch.compile (which
# users reach through `compile(jit_compile=True)`).
def test_compiled_forward_and_gradients(plan, rng):
    target, source = LENGTHS["t=s"]
    query, key, value = _inputs(rng, target, source)
    mask = rng.random((2, target, source)) < 0.7
    mask[1, 0] = False
    window, causal = 7, True
    expected = reference(query, key, value, window, mask, causal)
    expected_grads = vjp(_explicit(window, mask, causal, target, source), (query, key, value),
                         np.ones_like(query))
    if BACKEND == "jax":
        import jax

        def loss(q, k, v, mask):
            out = band.attention(q, k, v, window=window, mask=mask, causal=causal)
            return out.sum(), out

        (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
            query, key, value, mask)
    elif BACKEND == "torch":
        import torch

        @torch.compile
        def attend(q, k, v, mask):
            return band.attention(q, k, v, window=window, mask=mask, causal=causal)

        tensors = [torch.tensor(x, requires_grad=True) for x in (query, key, value)]
        out = attend(*tensors, torch.tensor(mask))
        grads = torch.autograd.grad(out.sum(), tensors)
        eager = band.attention(*tensors, window=window, mask=torch.tensor(mask),
                               causal=causal)
        assert torch.equal(out, eager)  # the same blocks, the same SDPA calls
        out = out.detach()
    else:
        import tensorflow as tf

        # A batch unknown while tracing: the plan counts it as 1.
        spec = [tf.TensorSpec((None,) + x.shape[1:], x.dtype) for x in (query, key, value)]

        @tf.function(input_signature=[*spec, tf.TensorSpec((None, target, source), tf.bool)])
        def loss(q, k, v, mask):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                out = band.attention(q, k, v, window=window, mask=mask, causal=causal)
                total = tf.reduce_sum(out)
            return out, tape.gradient(total, [q, k, v])

        out, grads = loss(query, key, value, mask)
    np.testing.assert_allclose(to_numpy(out), expected, atol=ATOL, rtol=0)
    _close_grads([to_numpy(g) for g in grads], expected_grads)
