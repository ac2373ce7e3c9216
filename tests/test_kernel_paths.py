"""The choice of attention path (kernels/paths.py), and every path forced on CPU.

The GPU paths run here on CPU: jax's cuDNN path is `jax.nn.dot_product_attention`,
whose `implementation="xla"` form (what runs without a GPU) is the same call;
torch's three SDPA calls run on CPU too, in bfloat16. Each is held to the float64
numpy reference (tests/reference.py) at half-precision tolerances, gradients
included, with a query row that has no key.
"""

import keras
import numpy as np
import pytest
from gradients import vjp
from helpers import random_weights, to_numpy
from reference import gqa_reference

import pygqa
from pygqa import kernels
from pygqa.kernels import explicit, paths
from pygqa.kernels.numerics import with_causal
from pygqa.kernels.paths import CPU, Device, choose_path

BACKEND = keras.backend.backend()
HOPPER, AMPERE, VOLTA = Device("gpu", (9, 0)), Device("gpu", (8, 0)), Device("gpu", (7, 0))
TF_GPU = Device("gpu", None)
AMX_CPU = Device("cpu", None, bfloat16_products=True)

# Half-precision tolerances, relative to the largest magnitude of the float32 /
# float64 result. Inputs are rounded to the half type (bfloat16 keeps 8 bits, ~4e-3
# relative; float16 11 bits, ~5e-4) and so is the output; sums over ~40 keys add a
# few roundings more. Measured largest differences are reported in the README.
TOLERANCE = {"bfloat16": 2e-2, "float16": 3e-3}
GRAD_TOLERANCE = {"bfloat16": 4e-2, "float16": 6e-3}

# (id, backend, device, dtype, head_dim, T, S, masked, causal, options) -> (path, upcast)
DECISIONS = [
    ("jax-cpu-fp32", "jax", CPU, "float32", 128, 64, 64, False, False, {}, "jax_blockwise", True),
    ("jax-cpu-bf16-mask", "jax", CPU, "bfloat16", 128, 64, 64, True, False, {},
     "jax_blockwise", True),
    ("jax-gpu-bf16", "jax", HOPPER, "bfloat16", 128, 64, 64, False, False, {}, "jax_cudnn", False),
    ("jax-gpu-fp16-mask", "jax", HOPPER, "float16", 128, 64, 64, True, False, {},
     "jax_cudnn", False),
    ("jax-gpu-bf16-hd96", "jax", HOPPER, "bfloat16", 96, 64, 64, False, False, {},
     "jax_cudnn", False),
    ("jax-gpu-bf16-hd264", "jax", HOPPER, "bfloat16", 264, 64, 64, False, False, {},
     "jax_blockwise", True),
    ("jax-ampere-bf16-hd256", "jax", AMPERE, "bfloat16", 256, 64, 64, False, False, {},
     "jax_blockwise", True),
    ("jax-hopper-bf16-hd256", "jax", HOPPER, "bfloat16", 256, 64, 64, False, False, {},
     "jax_cudnn", False),
    ("jax-gpu-fp32", "jax", HOPPER, "float32", 128, 64, 64, False, False, {},
     "jax_blockwise", True),
    ("jax-volta-bf16", "jax", VOLTA, "bfloat16", 128, 64, 64, False, False, {},
     "jax_blockwise", True),
    ("jax-gpu-causal-T=S", "jax", HOPPER, "bfloat16", 128, 64, 64, False, True, {},
     "jax_cudnn", False),
    ("jax-gpu-causal-T!=S", "jax", HOPPER, "bfloat16", 128, 32, 64, False, True, {},
     "jax_cudnn", False),
    ("jax-gpu-causal-odd-T!=S", "jax", HOPPER, "bfloat16", 128, 97, 64, False, True, {},
     "jax_blockwise", True),
    ("jax-gpu-mask-odd", "jax", HOPPER, "bfloat16", 128, 7, 7, True, False, {},
     "jax_blockwise", True),
    ("jax-gpu-scores", "jax", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"scores": True}, "explicit", True),
    ("jax-gpu-dropout", "jax", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"dropout": True}, "explicit", True),
    ("jax-gpu-flash-false", "jax", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"flash_attention": False}, "explicit", True),
    ("jax-gpu-flash-true", "jax", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"flash_attention": True}, "jax_cudnn", False),
    ("jax-unknown-length", "jax", HOPPER, "bfloat16", 128, None, 64, False, False, {},
     "explicit", True),
    ("torch-cpu-fp32", "torch", CPU, "float32", 128, 64, 64, False, False, {},
     "torch_sdpa", True),
    ("torch-cpu-bf16-mask", "torch", CPU, "bfloat16", 128, 64, 64, True, True, {},
     "torch_sdpa", True),
    # A CPU with native bfloat16 products (AMX, AVX512_BF16) keeps bfloat16 for SDPA;
    # float16 and CPUs without them upcast.
    ("torch-amx-bf16", "torch", AMX_CPU, "bfloat16", 64, 64, 64, True, True, {},
     "torch_sdpa", False),
    ("torch-amx-fp16", "torch", AMX_CPU, "float16", 64, 64, 64, False, False, {},
     "torch_sdpa", True),
    ("torch-amx-fp32", "torch", AMX_CPU, "float32", 64, 64, 64, False, False, {},
     "torch_sdpa", True),
    ("torch-amx-bf16-scores", "torch", AMX_CPU, "bfloat16", 64, 64, 64, False, False,
     {"scores": True}, "explicit", False),
    ("torch-amx-fp16-scores", "torch", AMX_CPU, "float16", 64, 64, 64, False, False,
     {"scores": True}, "explicit", True),
    ("tf-amx-bf16-dropout", "tensorflow", AMX_CPU, "bfloat16", 64, 64, 64, True, False,
     {"dropout": True}, "explicit", False),
    ("tf-amx-bf16", "tensorflow", AMX_CPU, "bfloat16", 64, 64, 64, True, False, {},
     "tf_blockwise", False),
    ("tf-cpu-bf16", "tensorflow", CPU, "bfloat16", 64, 64, 64, True, False, {},
     "tf_blockwise", True),
    ("tf-amx-bf16-window", "tensorflow", AMX_CPU, "bfloat16", 64, 64, 64, False, True,
     {"window": 16}, "tf_band", False),
    ("tf-cpu-bf16-window", "tensorflow", CPU, "bfloat16", 64, 64, 64, False, True,
     {"window": 16}, "tf_band", True),
    ("tf-amx-fp16", "tensorflow", AMX_CPU, "float16", 64, 64, 64, True, False, {},
     "tf_blockwise", True),
    ("torch-gpu-bf16-scores-upcast", "torch", HOPPER, "bfloat16", 64, 64, 64, False, False,
     {"scores": True}, "explicit", True),
    ("torch-gpu-bf16", "torch", HOPPER, "bfloat16", 128, 64, 64, False, False, {},
     "torch_sdpa", False),
    ("torch-gpu-bf16-hd96", "torch", HOPPER, "bfloat16", 96, 64, 64, False, False, {},
     "torch_sdpa", False),
    ("torch-gpu-causal-T=S", "torch", HOPPER, "bfloat16", 128, 64, 64, False, True, {},
     "torch_sdpa", False),
    ("torch-gpu-causal-T!=S", "torch", HOPPER, "bfloat16", 128, 32, 64, False, True, {},
     "torch_sdpa_cudnn", False),
    ("torch-gpu-bf16-mask", "torch", HOPPER, "bfloat16", 128, 64, 64, True, False, {},
     "torch_sdpa_cudnn", False),
    ("torch-gpu-bf16-mask-hd96", "torch", AMPERE, "bfloat16", 96, 64, 64, True, False, {},
     "torch_sdpa_cudnn", False),
    ("torch-gpu-bf16-mask-hd264", "torch", HOPPER, "bfloat16", 264, 64, 64, True, False, {},
     "torch_sdpa_repeat", False),
    ("torch-gpu-bf16-hd264", "torch", HOPPER, "bfloat16", 264, 64, 64, False, False, {},
     "torch_sdpa_repeat", False),
    ("torch-gpu-fp32", "torch", HOPPER, "float32", 128, 64, 64, False, False, {},
     "torch_sdpa_repeat", False),
    ("torch-gpu-fp32-mask", "torch", HOPPER, "float32", 128, 64, 64, True, False, {},
     "torch_sdpa_repeat", False),
    ("torch-volta-fp16-mask", "torch", VOLTA, "float16", 128, 64, 64, True, False, {},
     "torch_sdpa_repeat", False),
    ("torch-gpu-scores", "torch", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"scores": True}, "explicit", True),
    ("torch-gpu-dropout", "torch", HOPPER, "bfloat16", 128, 64, 64, True, False,
     {"dropout": True}, "explicit", True),
    ("torch-gpu-flash-false", "torch", HOPPER, "bfloat16", 128, 64, 64, False, False,
     {"flash_attention": False}, "explicit", True),
    ("tf-cpu-fp32", "tensorflow", CPU, "float32", 128, 64, 64, False, False, {},
     "tf_blockwise", True),
    ("tf-gpu-bf16-mask", "tensorflow", TF_GPU, "bfloat16", 128, 64, 64, True, True, {},
     "tf_blockwise", True),
    ("tf-gpu-scores", "tensorflow", TF_GPU, "bfloat16", 128, 64, 64, False, False,
     {"scores": True}, "explicit", True),
    ("numpy", "numpy", CPU, "float32", 128, 64, 64, False, False, {}, "explicit", True),
    # A sliding window: a band where a band kernel takes it, else one more mask.
    ("jax-cpu-window", "jax", CPU, "float32", 64, 64, 64, False, True, {"window": 8},
     "jax_band", True),
    ("jax-cpu-window-mask", "jax", CPU, "bfloat16", 64, 37, 41, True, False, {"window": 8},
     "jax_band", True),
    ("jax-gpu-bf16-window", "jax", HOPPER, "bfloat16", 128, 64, 64, False, True, {"window": 8},
     "jax_cudnn", False),
    ("jax-gpu-fp32-window", "jax", HOPPER, "float32", 128, 64, 64, False, False, {"window": 8},
     "jax_band", True),
    ("jax-gpu-odd-window", "jax", HOPPER, "bfloat16", 128, 7, 7, False, False, {"window": 3},
     "jax_band", True),
    ("jax-window-unknown-length", "jax", CPU, "float32", 64, None, 64, False, True,
     {"window": 8}, "explicit", True),
    ("jax-window-scores", "jax", CPU, "float32", 64, 64, 64, False, True,
     {"window": 8, "scores": True}, "explicit", True),
    ("tf-cpu-window", "tensorflow", CPU, "float32", 64, 64, 64, True, True, {"window": 8},
     "tf_band", True),
    ("tf-gpu-window", "tensorflow", TF_GPU, "bfloat16", 64, 64, 64, False, False,
     {"window": 8}, "tf_band", True),
    ("tf-window-dropout", "tensorflow", CPU, "float32", 64, 64, 64, False, False,
     {"window": 8, "dropout": True}, "explicit", True),
]


@pytest.mark.parametrize(
    "backend, device, dtype, head_dim, target, source, masked, causal, options, name, upcast",
    [case[1:] for case in DECISIONS], ids=[case[0] for case in DECISIONS],
)
def test_choice(backend, device, dtype, head_dim, target, source, masked, causal, options,
                name, upcast):
    path = choose_path(backend, device, dtype, head_dim=head_dim, target_length=target,
                       source_length=source, masked=masked, causal=causal, **options)
    assert (path.name, path.upcast) == (name, upcast), path.reason
    assert path.fused == (name != "explicit")
    assert len(path.reason) > 20


def test_every_branch_gives_its_own_reason():
    reasons = {}
    for case in DECISIONS:
        _, backend, device, dtype, head_dim, target, source, masked, causal, options = case[:10]
        path = choose_path(backend, device, dtype, head_dim=head_dim, target_length=target,
                           source_length=source, masked=masked, causal=causal, **options)
        reasons.setdefault(path.name, set()).add(path.reason)
    assert set(reasons) == {"explicit", "jax_blockwise", "jax_cudnn", "torch_sdpa",
                            "torch_sdpa_cudnn", "torch_sdpa_repeat", "tf_blockwise",
                            "jax_band", "tf_band"}
    # CPU, and on a GPU why cuDNN refused: dtype, GPU, head_dim (two limits), odd lengths.
    assert len(reasons["jax_blockwise"]) == 6
    assert len(reasons["jax_band"]) == 3  # CPU; on a GPU: dtype, odd lengths
    # Four options that ask for it, the unknown length, and two of them kept in
    # bfloat16 products on a CPU that multiplies bfloat16 natively.
    assert len(reasons["explicit"]) == 7


def test_this_machine_is_a_cpu_and_keeps_its_paths():
    device = kernels.current_device(BACKEND)
    assert (device.kind, device.capability) == ("cpu", None)
    # torch, and TensorFlow with oneDNN, multiply bfloat16 on the CPU's units; XLA:CPU
    # converts it (slower than float32), so jax never asks.
    onednn = False
    if BACKEND == "tensorflow":
        from pygqa.kernels import tf_blockwise

        onednn = tf_blockwise.uses_onednn()
    native = {"torch": True, "jax": False, "tensorflow": onednn}
    assert device.bfloat16_products == (native[BACKEND] and paths.cpu_multiplies_bfloat16())
    expected = {"jax": "jax_blockwise", "torch": "torch_sdpa", "tensorflow": "tf_blockwise"}
    for dtype in ("float32", "bfloat16"):
        path = choose_path(BACKEND, CPU, dtype, head_dim=64, target_length=64,
                           source_length=64, masked=True, causal=True)
        assert (path.name, path.upcast) == (expected[BACKEND], True)
    band = {"jax": "jax_band", "torch": "torch_sdpa", "tensorflow": "tf_band"}
    path = choose_path(BACKEND, CPU, "float32", head_dim=64, target_length=64,
                       source_length=64, masked=False, causal=True, window=8)
    assert (path.name, path.band) == (band[BACKEND], BACKEND != "torch")


@pytest.fixture
def recorded_paths(monkeypatch):
    """The names of the fused paths that the layer's calls run, in order."""
    ran = []
    real_kernel = kernels.kernel

    def recording_kernel(path):
        ran.append(path.name)
        return real_kernel(path)

    monkeypatch.setattr(kernels, "kernel", recording_kernel)
    return ran


def test_a_windowed_layer_runs_the_path_the_choice_names(recorded_paths):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 40, 16)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, 8, 2, sliding_window=6)
    plain = pygqa.GroupQueryAttention(4, 8, 2)
    layer(x), plain(x)
    plain.set_weights(random_weights(layer, rng))
    recorded_paths.clear()
    got = to_numpy(layer(x, use_causal_mask=True))
    expected = choose_path(BACKEND, CPU, "float32", head_dim=4, target_length=40,
                           source_length=40, masked=False, causal=True, window=6).name
    assert recorded_paths == [expected]
    band = np.abs(np.arange(40)[:, None] - np.arange(40)) < 6
    want = to_numpy(plain(x, attention_mask=np.broadcast_to(band, (2, 40, 40)),
                          use_causal_mask=True))
    np.testing.assert_allclose(got, want, atol=2e-6 * np.abs(want).max(), rtol=0)


# --- every path of this backend that takes half precision, forced, against the
# float64 reference (TensorFlow's blockwise kernel takes bfloat16 where oneDNN
# multiplies it natively; here on any CPU) -------------------------------------------

FORCED = {
    "jax": ["jax_cudnn"],
    "torch": ["torch_sdpa", "torch_sdpa_cudnn", "torch_sdpa_repeat"],
    "tensorflow": ["tf_blockwise"],
}[BACKEND]
CASES = {  # (T, S, masked, causal)
    "plain": (37, 37, False, False),
    "causal": (37, 37, False, True),
    "mask+empty-row": (37, 41, True, False),
    "mask+causal": (36, 36, True, True),
    "causal-T!=S": (20, 36, False, True),
}


def _problem(target, source, masked, seed=3, heads=8, kv_heads=2, head_dim=16, batch=2):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(batch, target, heads, head_dim)).astype("float32")
    key = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    value = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    mask = None
    if masked:
        mask = rng.random((batch, target, source)) < 0.6
        mask[0, 3] = False  # a query row with no key at all
    return query, key, value, mask


def _reference(query, key, value, mask, causal):
    """float64 attention through tests/reference.py, with identity projections."""
    batch, target, heads, head_dim = query.shape
    kv_heads = key.shape[2]
    eye = np.eye(heads * head_dim)
    eye_kv = np.eye(kv_heads * head_dim)
    weights = [
        eye.reshape(heads * head_dim, heads, head_dim), np.zeros((heads, head_dim)),
        eye_kv.reshape(-1, kv_heads, head_dim), np.zeros((kv_heads, head_dim)),
        eye_kv.reshape(-1, kv_heads, head_dim), np.zeros((kv_heads, head_dim)),
        eye.reshape(heads, head_dim, heads * head_dim), np.zeros(heads * head_dim),
    ]
    flat = [x.reshape(x.shape[0], x.shape[1], -1) for x in (query, value, key)]
    out, _ = gqa_reference(weights, *flat, mask=mask, causal=causal)
    return out.reshape(batch, target, heads, head_dim)


def _explicit(mask, causal, target, source):
    full = None if mask is None else keras.ops.convert_to_tensor(mask)
    if causal:
        full = with_causal(full, target, source)

    def run(q, k, v):
        return explicit.weighted_values(explicit.probabilities(q, k, full), v)

    return run


# bfloat16 on every case; float16 on the masked one (it takes the same kernels).
FORCED_CASES = [
    (name, dtype, case)
    for name in FORCED
    for dtype in ("bfloat16", "float16")
    for case in (CASES if dtype == "bfloat16" else ("mask+empty-row",))
]


def _compiled(function, dtype="float32"):
    """jax.jit on JAX: one compilation per case instead of one per eager operation.

    Not for float16: XLA on CPU has no float16 x float16 -> float32 product, which
    jax's dot_product_attention asks for; eagerly, jax falls back to the default
    precision, under jit the compilation fails (on a GPU cuDNN runs instead).
    """
    if BACKEND == "jax" and dtype != "float16":
        import jax

        return jax.jit(function)
    return function


@pytest.mark.parametrize("name, dtype, case", FORCED_CASES,
                         ids=["-".join(c) for c in FORCED_CASES])
def test_forced_path_matches_the_reference(name, dtype, case):
    target, source, masked, causal = CASES[case]
    query, key, value, mask = _problem(target, source, masked)
    run = paths.kernel(paths.Path(name, False, "forced"))
    kernel_mask = None if mask is None else keras.ops.convert_to_tensor(mask)

    def half(q, k, v):
        q, k, v = (keras.ops.cast(x, dtype) for x in (q, k, v))
        out = run(q, k, v, mask=kernel_mask, causal=causal)
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        return keras.ops.cast(out, "float32")

    half = _compiled(half, dtype)

    tensors = [keras.ops.convert_to_tensor(x) for x in (query, key, value)]
    got = to_numpy(half(*tensors))
    expected = _reference(query, key, value, mask, causal)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=TOLERANCE[dtype] * scale, rtol=0)
    if masked:  # pygqa's rule: a row without keys outputs exactly zero
        assert not expected[0, 3].any() and not got[0, 3].any()

    d_out = np.random.default_rng(4).normal(size=query.shape).astype("float32")
    grads = vjp(half, (query, key, value), d_out)
    explicit = _compiled(_explicit(mask, causal, target, source))
    expected_grads = vjp(explicit, (query, key, value), d_out)
    for got_grad, want in zip(grads, expected_grads, strict=True):
        assert np.isfinite(got_grad).all()
        np.testing.assert_allclose(
            got_grad, want, atol=GRAD_TOLERANCE[dtype] * np.abs(want).max(), rtol=0
        )


# --- the layer on a simulated GPU: the path the choice names runs -------------------


@pytest.fixture
def simulated_gpu(monkeypatch):
    """Makes attention.py see a Hopper GPU and records the paths that run."""
    ran = []
    real_kernel = kernels.kernel

    def recording_kernel(path):
        ran.append(path.name)
        return real_kernel(path)

    monkeypatch.setattr(kernels, "current_device", lambda backend, tensor=None: HOPPER)
    monkeypatch.setattr(kernels, "kernel", recording_kernel)
    return ran


GPU_LAYER_CASES = {  # call kwargs builder id -> (T, S, masked, causal)
    "plain": (12, 12, False, False),
    "causal": (12, 12, False, True),
    "mask": (12, 16, True, False),
    "causal-T!=S": (12, 16, False, True),
}


@pytest.mark.parametrize("case", GPU_LAYER_CASES)
def test_mixed_bfloat16_layer_on_a_simulated_gpu(simulated_gpu, case):
    target, source, masked, causal = GPU_LAYER_CASES[case]
    rng = np.random.default_rng(11)
    q = rng.normal(size=(2, target, 32)).astype("float32")
    v = rng.normal(size=(2, source, 32)).astype("float32")
    reference = pygqa.GroupQueryAttention(16, 4, 2)  # head_dim 16: a multiple of 8
    reference(q, v)
    weights = random_weights(reference, rng)
    half = pygqa.GroupQueryAttention(16, 4, 2, dtype="mixed_bfloat16")
    half(q, v)
    half.set_weights(weights)
    kwargs = {"use_causal_mask": causal}
    if masked:
        mask = rng.random((2, target, source)) < 0.6
        mask[1, 5] = False  # a query row with no key
        kwargs["attention_mask"] = mask
    simulated_gpu.clear()
    got = half(q, v, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    got = to_numpy(got).astype("float32")
    dense = masked or (causal and target != source)
    expected_path = {
        "jax": "jax_cudnn",
        "torch": "torch_sdpa_cudnn" if dense else "torch_sdpa",
        "tensorflow": "tf_blockwise",
    }[BACKEND]
    assert simulated_gpu == [expected_path]
    expected = gqa_reference(weights, q, v, mask=kwargs.get("attention_mask"), causal=causal)[0]
    np.testing.assert_allclose(got, expected, atol=6e-2 * np.abs(expected).max(), rtol=0)
    if masked:  # the row without keys is the output bias (rounded to bfloat16)
        bias = keras.ops.convert_to_numpy(keras.ops.cast(weights[-1], "bfloat16"))
        np.testing.assert_allclose(got[1, 5], bias.astype("float32"), rtol=1e-2, atol=1e-3)


def test_flash_attention_steers_the_choice_on_a_simulated_gpu(simulated_gpu):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 8, 32)).astype("float32")
    forced = pygqa.GroupQueryAttention(16, 4, 2, flash_attention=True, dropout=0.5,
                                       dtype="mixed_bfloat16")
    forced(x)
    assert simulated_gpu[-1] == {"jax": "jax_cudnn", "torch": "torch_sdpa",
                                 "tensorflow": "tf_blockwise"}[BACKEND]
    with pytest.raises(ValueError, match="return_attention_scores=True"):
        forced(x, return_attention_scores=True)
    with pytest.raises(ValueError, match=r"dropout=0\.5, training=True"):
        forced(x, training=True)
    explicit = pygqa.GroupQueryAttention(16, 4, 2, flash_attention=False)
    simulated_gpu.clear()
    explicit(x)
    assert simulated_gpu == []  # the explicit path calls no kernel


def test_bfloat16_products_are_read_from_the_cpu_flags(tmp_path):
    for flags, expected in [("fpu avx2 avx512f amx_tile amx_bf16", True),
                            ("fpu avx2 avx512f avx512_bf16", True),
                            ("fpu avx2 fma avx512f avx512bw", False)]:
        cpuinfo = tmp_path / f"cpuinfo-{expected}-{len(flags)}"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n")
        assert paths.cpu_multiplies_bfloat16.__wrapped__(str(cpuinfo)) is expected, flags
    assert paths.cpu_multiplies_bfloat16.__wrapped__(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("flags", [True, False], ids=["bf16-cpu", "plain-cpu"])
def test_jax_explicit_path_keeps_bfloat16_only_where_the_cpu_multiplies_it(monkeypatch, flags):
    """JAX's explicit path (scores here) keeps bfloat16 products where the CPU's flags
    say it multiplies bfloat16 (measured faster there), and upcasts elsewhere; its
    block kernels upcast either way (XLA:CPU's bfloat16 products are slower)."""
    monkeypatch.setattr(paths, "cpu_multiplies_bfloat16", lambda: flags)
    explicit = choose_path("jax", CPU, "bfloat16", head_dim=64, target_length=64,
                           source_length=64, masked=False, causal=False, scores=True)
    assert (explicit.name, explicit.upcast) == ("explicit", not flags), explicit.reason
    blockwise = choose_path("jax", CPU, "bfloat16", head_dim=64, target_length=64,
                            source_length=64, masked=False, causal=False)
    assert (blockwise.name, blockwise.upcast) == ("jax_blockwise", True)
    float32 = choose_path("jax", CPU, "float32", head_dim=64, target_length=64,
                          source_length=64, masked=False, causal=False, scores=True)
    assert float32.upcast
