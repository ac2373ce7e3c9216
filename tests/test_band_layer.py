"""The layer's sliding window on the band paths, as the layer runs them, on every backend.

From 512 query rows every backend computes a narrow window as a band (jax_band,
tf_band, torch_band: kernels/paths.py); shorter calls, scores, dropout and
cached decoding take the window as a mask. Oracles: Keras's layer with the
same window and weights (on rows that keep a key: on the others Keras's own
paths disagree), the float64 reference, and the same layer on the explicit
path (flash_attention=False) for gradients, eager and compiled.
"""

import keras
import numpy as np
import pytest
from gradients import loss_gradients
from helpers import compiled, random_masks, random_weights, to_numpy
from reference import gqa_reference

import pygqa
from pygqa import kernels
from pygqa.kernels import band_blocks, paths

BACKEND = keras.backend.backend()
BAND = {"jax": "jax_band", "tensorflow": "tf_band", "torch": "torch_band"}[BACKEND]

# float32 sums over at most ~60 keys of O(1) terms, then the output projection:
# the layer's outputs are O(1) and agree to ~3e-7 (measured); 1e-5 leaves ~30x.
ATOL = 1e-5
# Gradients relative to their largest entry (as tests/test_gradients.py).
GRAD_RTOL = 1e-5

# (T, S, window, causal): T != S both ways, odd lengths, two-sided and causal.
CASES = {
    "causal": (520, 520, 40, True),
    "two-sided": (531, 531, 24, False),
    "wide": (515, 601, 33, True),
    "tall": (600, 527, 17, False),
}


@pytest.fixture
def ran(monkeypatch):
    """The fused paths the layer's calls run, in order."""
    names = []
    real_kernel = kernels.kernel

    def recording_kernel(path):
        names.append(path.name)
        return real_kernel(path)

    monkeypatch.setattr(kernels, "kernel", recording_kernel)
    return names


def _inputs(rng, target, source, batch=2, dim=16):
    q = rng.normal(size=(batch, target, dim)).astype("float32")
    v = rng.normal(size=(batch, source, dim)).astype("float32")
    return q, v


def _layers(rng, q, v, window, **options):
    """pygqa on its chosen path, pygqa on the explicit path, Keras: one set of weights."""
    ours = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=window, **options)
    explicit = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=window, flash_attention=False,
                                         **options)
    theirs = keras.layers.GroupQueryAttention(4, 8, 2, sliding_window=window, **options)
    for layer in (ours, explicit, theirs):
        layer(q[:, :8], v[:, :8])
    weights = random_weights(ours, rng)
    explicit.set_weights(weights)
    theirs.set_weights(weights)
    return ours, explicit, theirs, weights


def _band(target, source, window, causal):
    keep = np.abs(np.arange(target)[:, None] - np.arange(source)) < window
    return keep & (np.arange(source) <= np.arange(target)[:, None]) if causal else keep


@pytest.mark.parametrize("gate", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("case", CASES)
def test_the_band_path_equals_keras_and_the_reference(ran, case, gate, rng):
    target, source, window, causal = CASES[case]
    q, v = _inputs(rng, target, source)
    ours, _, theirs, weights = _layers(rng, q, v, window, use_gate=gate)
    ran.clear()
    got = to_numpy(ours(q, v, use_causal_mask=causal))
    assert ran == [BAND]
    expected, _ = gqa_reference(weights, q, v, causal=causal, sliding_window=window,
                                use_gate=gate)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    rows = _band(target, source, window, causal).any(-1)  # query rows that keep a key
    keras_out = to_numpy(theirs(q, v, use_causal_mask=causal))
    np.testing.assert_allclose(got[:, rows], keras_out[:, rows], atol=ATOL, rtol=0)


@pytest.mark.parametrize("causal", [False, True], ids=["two-sided", "causal"])
def test_every_mask_kind_with_rows_left_empty(ran, causal, rng):
    target, source, window = 523, 517, 9
    q, v = _inputs(rng, target, source)
    ours, _, _, weights = _layers(rng, q, v, window)
    masks = random_masks(rng, 2, target, source)
    masks["attention_mask"][1, 100:110, 90:] = False  # rows the mask and the window empty
    ran.clear()
    got = to_numpy(ours(q, v, use_causal_mask=causal, **masks))
    assert ran == [BAND]
    keep = masks["attention_mask"] & masks["query_mask"][:, :, None]
    keep &= (masks["value_mask"] & masks["key_mask"])[:, None, :]
    expected, _ = gqa_reference(weights, q, v, mask=keep, causal=causal, sliding_window=window)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    empty = ~(keep & _band(target, source, window, causal)).any(-1)
    assert empty[0, 0] and empty[1, 100:110].all()
    # pygqa's rule: a row without keys outputs the output projection's bias.
    np.testing.assert_allclose(got[empty], np.broadcast_to(weights[-1], (empty.sum(), 16)),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["causal", "wide"])
def test_gradients_equal_the_explicit_path(ran, case, rng):
    target, _, window, causal = CASES[case]
    q, _ = _inputs(rng, target, target)
    ours, explicit, _, _ = _layers(rng, q, q, window)
    mask = rng.random((2, target, target)) < 0.8
    mask[0, 7] = False  # a row with no key: zero output, zero gradients through it
    kwargs = {"use_causal_mask": causal, "attention_mask": mask}
    ran.clear()
    got = loss_gradients(ours, q, **kwargs)
    assert ran == [BAND]
    expected = loss_gradients(explicit, q, **kwargs)
    assert len(got) == len(expected) == 9  # 8 weights and the input
    # Relative to the largest gradient of all: the key bias's is zero but for
    # rounding (a shift of every key's logit in a row leaves its softmax as it is).
    scale = max(np.abs(e).max() for e in expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=GRAD_RTOL * scale, rtol=0)


def test_compiled_equals_eager(ran, rng):
    """jax.jit and tf.function as their users compile; torch.compile on torch."""
    target, source, window, causal = CASES["wide"]
    q, v = _inputs(rng, target, source)
    ours, _, _, weights = _layers(rng, q, v, window, use_gate=True)
    eager = to_numpy(ours(q, v, use_causal_mask=causal))

    def call(q, v):
        return ours(q, v, use_causal_mask=causal)

    if BACKEND == "torch":
        import torch

        function = torch.compile(call)
    else:
        function = compiled(call)
    ran.clear()
    got = to_numpy(function(keras.ops.convert_to_tensor(q), keras.ops.convert_to_tensor(v)))
    assert set(ran) == {BAND}  # traced once (or more, by torch's graph breaks)
    np.testing.assert_allclose(got, eager, atol=ATOL, rtol=0)
    expected, _ = gqa_reference(weights, q, v, causal=causal, sliding_window=window,
                                use_gate=True)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_calls_the_band_does_not_take(ran, rng):
    q, _ = _inputs(rng, 520, 520)
    ours = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=16, dropout=0.3, seed=1)
    ours(q)
    ran.clear()
    _, scores = ours(q, use_causal_mask=True, return_attention_scores=True)
    ours(q, use_causal_mask=True, training=True)
    assert ran == []  # scores and dropout: the explicit path, which forms the probabilities
    short = {"jax": "jax_band", "tensorflow": "tf_band", "torch": "torch_sdpa"}[BACKEND]
    ours(q[:, :64], use_causal_mask=True)
    assert ran == [short]  # below 512 rows torch's per-block calls do not pay
    ran.clear()
    cache = ours.empty_cache(2, 600)
    _, cache = ours(q, cache=cache, cache_update_index=0, use_causal_mask=True)
    ours(q[:, :1], cache=cache, cache_update_index=520, use_causal_mask=True)
    # With a cache the window is folded into the cache's slot mask.
    assert not set(ran) & set(paths.BAND_PATHS)


def test_torch_routes_by_length_and_share():
    def name(target, source, window, causal=True):
        return choose(target, source, window, causal).name

    def choose(target, source, window, causal, device=paths.CPU, dtype="float32"):
        return paths.choose_path("torch", device, dtype, head_dim=64, target_length=target,
                                 source_length=source, masked=False, causal=causal,
                                 window=window)

    assert name(8192, 8192, 512) == "torch_band"
    assert name(512, 512, 64) == "torch_band"
    assert name(paths.TORCH_BAND_MIN_ROWS - 1, 4096, 64) == "torch_sdpa"  # short query
    assert name(1024, 1024, 512, causal=False) == "torch_sdpa"  # the band covers 0.81
    assert name(None, 1024, 64) == "torch_sdpa"  # length unknown while tracing
    hopper = paths.Device("gpu", (9, 0))
    assert choose(4096, 4096, 64, True, hopper).name != "torch_band"  # not measured on GPUs
    amx = paths.Device("cpu", None, bfloat16_products=True)
    assert choose(4096, 4096, 64, True, amx, "bfloat16").upcast is False
    assert choose(4096, 4096, 64, True, amx, "float16").upcast is True
    for target, window, causal in [(8192, 512, True), (1024, 64, False), (600, 600, True)]:
        share = band_blocks.band_share(target, target, window, causal)
        assert (share <= paths.TORCH_BAND_MAX_SHARE) == (
            name(target, target, window, causal) == "torch_band")


def test_mixed_bfloat16_on_the_band_path(ran, rng):
    """Under mixed_bfloat16 the band runs in float32, or in bfloat16 on torch where
    the CPU multiplies it natively (paths.py); either way within bfloat16's rounding
    of the float64 reference (inputs, weights and output rounded to 8 bits): 8e-3 of
    the output's scale measured on torch (bfloat16 band) and JAX (float32 band)."""
    target, source, window, causal = CASES["causal"]
    q, v = _inputs(rng, target, source)
    ours, _, _, weights = _layers(rng, q, v, window)
    half = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=window, dtype="mixed_bfloat16")
    half(q[:, :8], v[:, :8])
    half.set_weights(weights)
    ran.clear()
    got = to_numpy(keras.ops.cast(half(q, v, use_causal_mask=causal), "float32"))
    assert ran == [BAND]
    expected, _ = gqa_reference(weights, q, v, causal=causal, sliding_window=window)
    np.testing.assert_allclose(got, expected, atol=3e-2 * np.abs(expected).max(), rtol=0)
