"""Which attention path a call takes, decided in one place, with the reason.

`choose_path` is a pure function of the backend, the device, the compute
dtype, the shapes and the call's options, so every decision can be tested
without the device it is made for. The constraints of the fused kernels it
relies on were read from the installed libraries' sources (jax 0.10.2:
`jax/_src/cudnn/fused_attention_stablehlo.py`, `jax/_src/nn/functions.py`;
torch 2.13: `ATen/native/transformers/sdp_utils_cpp.h` and the SDPA backend
priority order in `ATen/Context.h`).

Paths:

- `explicit`: softmax(QK^T)V with the full probabilities (explicit.py;
  scores, dropout, the soft cap, `flash_attention=False`).
- `jax_blockwise`, `tf_blockwise`: pygqa's blockwise kernel (blockwise.py).
- `jax_band`, `tf_band`: a sliding window computed as a band (band_jax.py,
  band_tf.py over band_blocks.py), linear in the length.
- `torch_band`: a sliding window as one SDPA call per block of query rows
  (band_torch.py), where the blocks skip enough of the square to pay for
  their calls. Every other path takes the window as one more mask.
- `jax_cudnn`: `jax.nn.dot_product_attention(implementation="cudnn")`.
- `torch_sdpa`: `scaled_dot_product_attention(enable_gqa=True)`, torch picks
  the backend (on a GPU: FlashAttention).
- `torch_sdpa_cudnn`: the same call with the cuDNN backend ranked first.
- `torch_sdpa_repeat`: key/value repeated to the query's head count, so that
  the memory-efficient backend (which takes masks and float32) can run.

Every path keeps key/value at their own head count except the last, and
every path gives a query row without any key zero output (numerics.py).
"""

import collections
import dataclasses
import functools
import importlib

from pygqa.kernels import band_blocks

# kind: "cpu" or "gpu"; capability: (major, minor) of a CUDA GPU, else None;
# bfloat16_products: a CPU that multiplies bfloat16 matrices natively (AMX or
# AVX512_BF16), read from the CPU's flags, never assumed.
Device = collections.namedtuple("Device", ["kind", "capability", "bfloat16_products"],
                                defaults=(False,))
CPU = Device("cpu", None)

HALF_DTYPES = ("float16", "bfloat16")
EXPLICIT = "explicit"
BAND_PATHS = ("jax_band", "tf_band", "torch_band")

# torch on CPU takes a sliding window as a band (one SDPA call per block of
# query rows) from this many query rows on, where the blocks compute at most
# this share of the (T, S) logits (band_blocks.band_share). Measured against
# one SDPA call with the window as a mask, kernels alone (Intel Xeon with
# AMX, 2 cores, float32, batch 1, 8 query / 2 key-value heads, head_dim 64,
# windows 8-2048, causal and two-sided, with and without a mask, fwd and
# fwd+bwd, median of 9 paired rounds): from 512 rows, shares up to 0.62 ran
# 0.18-0.96x its time (one exception: 512 rows, a two-sided window and a
# mask, share 0.48, 1.04x fwd+bwd and 1.2x fwd); shares of 0.78-0.81 ran
# 1.03-1.16x at 512-1024 rows (0.85-0.96x from 2048); below 512 rows the
# per-block calls cost about what they save (0.57-1.6x at 64-256 rows,
# slower with a mask).
TORCH_BAND_MIN_ROWS = 512
TORCH_BAND_MAX_SHARE = 2 / 3

_KERNEL_MODULES = {
    "jax_blockwise": "pygqa.kernels.jax_blockwise",
    "tf_blockwise": "pygqa.kernels.tf_blockwise",
    "jax_band": "pygqa.kernels.band_jax",
    "tf_band": "pygqa.kernels.band_tf",
    "torch_band": "pygqa.kernels.band_torch",
    "jax_cudnn": "pygqa.kernels.jax_cudnn",
    "torch_sdpa": "pygqa.kernels.torch_sdpa",
    "torch_sdpa_cudnn": "pygqa.kernels.torch_sdpa",
    "torch_sdpa_repeat": "pygqa.kernels.torch_sdpa",
}
_KERNEL_FUNCTIONS = {
    "torch_sdpa_cudnn": "attention_cudnn_first",
    "torch_sdpa_repeat": "attention_repeated",
}


@dataclasses.dataclass(frozen=True)
class Path:
    """A path: its name, whether half-precision inputs are cast to float32
    before it (`upcast`), and why it was chosen."""

    name: str
    upcast: bool
    reason: str

    @property
    def fused(self):
        return self.name != EXPLICIT

    @property
    def band(self):
        """Whether the path computes the sliding window as a band (its kernel
        takes `window=`); on the others the window is one more mask."""
        return self.name in BAND_PATHS


def choose_path(
    backend,
    device,
    dtype,
    *,
    head_dim,
    target_length,
    source_length,
    masked,
    causal,
    scores=False,
    dropout=False,
    flash_attention=None,
    soft_cap=False,
    window=None,
):
    """The attention path for one call.

    Args:
        backend: Keras backend name.
        device: a `Device` (see `current_device`).
        dtype: the compute dtype's name ("float32", "bfloat16", ...).
        head_dim, target_length, source_length: sizes (lengths may be None
            when not known while tracing).
        masked: whether a boolean mask is passed (the causal flag and the
            window aside).
        causal: whether the call is causal (top-left aligned when T != S).
        scores: whether the probabilities are returned.
        dropout: whether dropout acts (rate > 0 and training).
        soft_cap: whether the logits are soft-capped (Gemma 2's tanh cap),
            which only the explicit path does.
        flash_attention: the layer's setting; False forces the explicit
            path, True and None let this function choose (attention.py
            raises where True meets the explicit path).
        window: the sliding window, None or a positive int. A band path
            computes it as a band; any other path gets it as a mask.

    Returns:
        A `Path`.
    """
    half = dtype in HALF_DTYPES
    explicit_reason = None
    if flash_attention is False:
        explicit_reason = "flash_attention=False asks for the explicit path"
    elif scores:
        explicit_reason = "only the explicit path forms the probabilities it returns"
    elif dropout:
        explicit_reason = "dropout acts on probabilities that fused kernels never form"
    elif soft_cap:
        explicit_reason = "only the explicit path caps the logits (logit_soft_cap)"
    if explicit_reason is not None:
        return _explicit_path(backend, device, dtype, explicit_reason)
    masked = masked or window is not None  # off the band paths the window is one more mask
    if backend == "torch":
        return _torch_path(device, half, head_dim, target_length, source_length, masked, causal,
                           dtype, window)
    if backend not in ("jax", "tensorflow"):
        return Path(EXPLICIT, True, f"pygqa has no fused kernel for the {backend} backend")
    if target_length is None or source_length is None:
        return Path(EXPLICIT, True, "the kernels need static sequence lengths to plan the call")
    if backend == "tensorflow":
        if window is not None:
            native = dtype == "bfloat16" and device.kind != "gpu" and device.bfloat16_products
            return Path("tf_band", not native, (
                "a sliding window runs as the band kernel: each block of query rows meets "
                "only the keys of its window, so work and memory grow linearly with the "
                "length" + ("; in bfloat16 products, which this CPU multiplies natively "
                            "through oneDNN, with the softmax and the gradients' sums in "
                            "float32: 1.32x faster forward and 1.34x forward+backward than "
                            "upcast at 1x8192, window 512 (AMX)" if native else "")))
        if device.kind == "gpu":
            return Path("tf_blockwise", True, (
                "TensorFlow has no fused attention kernel; the blockwise kernel keeps memory "
                "linear in the length. It stays in float32: tf.einsum cannot return float32 "
                "logits from half-precision operands, so half inputs would round the logits "
                "(not measured on a GPU: none was at hand)"))
        if dtype == "bfloat16" and device.bfloat16_products:
            return Path("tf_blockwise", False, (
                "the blockwise kernel was measured fastest on CPU; in bfloat16, which this "
                "CPU multiplies natively through oneDNN: its products stay in bfloat16, the "
                "softmax and the gradients' sums run in float32. The kernel ran 1.27x faster "
                "forward and 1.29-1.30x forward+backward than upcast at 4x512 and 1x4096 "
                "(AMX), and the layer's outputs equal Keras's under mixed_bfloat16"))
        return Path("tf_blockwise", True, "the blockwise kernel was measured fastest on CPU")
    if device.kind == "gpu":
        refusal = _cudnn_refusal(device, half, head_dim, target_length, source_length,
                                 masked, causal)
        if refusal is None:
            return Path("jax_cudnn", False, (
                "cuDNN's fused kernel takes grouped key/value and half-precision inputs "
                "and accumulates in float32"))
        if window is not None:
            return Path("jax_band", True, (
                f"cuDNN cannot take this call ({refusal}); the band kernel computes the "
                "sliding window as a band, linear in the length"))
        return Path("jax_blockwise", True, (
            f"cuDNN cannot take this call ({refusal}); the blockwise kernel keeps memory "
            "linear in the length, where XLA's dot_product_attention forms every logit"))
    if window is not None:
        return Path("jax_band", True, (
            "a sliding window runs as the band kernel, measured fastest on CPU: each block "
            "of query rows meets only the keys of its window"))
    return Path("jax_blockwise", True, "the blockwise kernel was measured fastest on CPU")


def _cudnn_refusal(device, half, head_dim, target_length, source_length, masked, causal):
    """Why jax's cuDNN attention cannot take a call, or None where it can."""
    capability = device.capability
    if not half:
        return "it takes only float16 and bfloat16"
    if capability is None or capability < (8, 0):
        return "it needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer"
    limit = 256 if capability >= (9, 0) else 128
    if head_dim % 8 or head_dim > limit:
        return f"head_dim must be a multiple of 8 and at most {limit} here"
    if _needs_dense_mask(masked, causal, target_length, source_length) and (
        target_length % 2 or source_length % 2
    ):
        return "with a mask its backward pass needs even sequence lengths"
    return None


def _needs_dense_mask(masked, causal, target_length, source_length):
    """Whether the kernel gets a dense mask. A causal call with T != S is
    folded into one: pygqa's causal mask is top-left aligned, and a fused
    kernel's causal flag is trusted only where T == S, where every alignment
    agrees (FlashAttention 2 aligns it bottom-right, and torch's flash
    backend refuses it for T != S)."""
    return masked or (causal and target_length != source_length)


def _explicit_path(backend, device, dtype, reason):
    if (backend == "jax" and dtype == "bfloat16" and device.kind == "cpu"
            and cpu_multiplies_bfloat16()):
        # XLA:CPU multiplies bfloat16 more slowly than float32, so the block kernels
        # upcast; the explicit path forms every probability, and halving their memory
        # traffic is worth more. Measured only on a CPU with AMX, hence the flag.
        return Path(EXPLICIT, False, reason + (
            "; in bfloat16, as Keras computes it (its softmax in float32): with scores at "
            "1x2048 under mixed_bfloat16 (AMX) Keras's time against pygqa's went from "
            "0.86x to 1.22x forward+backward, and from 1.25x to 1.10x forward"))
    if dtype == "bfloat16" and device.kind == "cpu" and device.bfloat16_products:
        # As Keras computes it: bfloat16 products accumulated in float32, the softmax
        # kernels' float32 sums; upcast, the same call ran 2.3-2.9x slower than Keras's.
        return Path(EXPLICIT, False, reason + (
            "; in bfloat16, which this CPU multiplies natively: with scores at 1x2048 under "
            "mixed_bfloat16 (AMX) Keras's time against pygqa's went from 0.35x to 1.02x on "
            "torch and from 0.43x to 1.03x on TensorFlow, with the same error against float64"))
    return Path(EXPLICIT, True, reason)


def _torch_path(device, half, head_dim, target_length, source_length, masked, causal,
                dtype="float32", window=None):
    native_bfloat16 = dtype == "bfloat16" and device.bfloat16_products
    if device.kind != "gpu" and window is not None:
        if _torch_band_pays(target_length, source_length, window, causal):
            return Path("torch_band", not native_bfloat16, (
                "a sliding window runs as one SDPA call per block of query rows over the keys "
                "its window reaches, so work and memory grow linearly with the length: "
                f"from {TORCH_BAND_MIN_ROWS} query rows, where the blocks compute at most "
                f"{TORCH_BAND_MAX_SHARE:.2f} of the square, measured faster than one call "
                "with the window as a mask"))
        if not native_bfloat16:
            return Path("torch_sdpa", True, (
                "one SDPA call with the window as a mask: the query is short or the window "
                "covers most of the square, where one SDPA call per block of query rows was "
                "measured no faster"))
    if device.kind != "gpu" and native_bfloat16:
        return Path("torch_sdpa", False, (
            "SDPA's CPU kernel takes bfloat16 with float32 accumulation, and this CPU "
            "multiplies bfloat16 natively: 2.7x float32's speed forward and 1.7x "
            "forward+backward at 1x4096 (AMX; benchmarks/results/intel-xeon-amx)"))
    if device.kind != "gpu":
        return Path("torch_sdpa", True, (
            "SDPA's CPU kernels are blocked, take grouped key/value (enable_gqa) and were "
            "measured fastest on CPU"))
    ampere = device.capability is not None and device.capability >= (8, 0)
    dense = _needs_dense_mask(masked, causal, target_length, source_length)
    if half and ampere and not dense and head_dim <= 256:
        return Path("torch_sdpa", False, (
            "the flash backend takes grouped key/value without copying them (no mask, "
            "causal only where T == S)"))
    if half and ampere and head_dim % 8 == 0 and head_dim <= 128 and source_length != 1:
        return Path("torch_sdpa_cudnn", False, (
            "the cuDNN backend takes grouped key/value and a mask; torch ranks it after the "
            "math backend, so the call ranks it first"))
    return Path("torch_sdpa_repeat", False, (
        "no fused backend takes this call with grouped key/value (flash: half precision, no "
        "mask; cuDNN: half precision, head_dim <= 128; memory-efficient: no grouped key/value "
        "in torch 2.13), so key/value are repeated and the memory-efficient kernel runs "
        "instead of the math backend"))


def _torch_band_pays(target_length, source_length, window, causal):
    """Whether band_torch's blocks beat one masked SDPA call (see TORCH_BAND_MAX_SHARE)."""
    if not (isinstance(target_length, int) and isinstance(source_length, int)):
        return False  # not known while tracing: nothing to plan the blocks with
    if target_length < TORCH_BAND_MIN_ROWS:
        return False
    share = band_blocks.band_share(target_length, source_length, window, causal)
    return share <= TORCH_BAND_MAX_SHARE


def kernel(path):
    """The kernel function of a fused path: f(query, key, value, *, mask, causal),
    with `window=` too on a band path."""
    module = importlib.import_module(_KERNEL_MODULES[path.name])
    return getattr(module, _KERNEL_FUNCTIONS.get(path.name, "attention"))


@functools.cache
def cpu_multiplies_bfloat16(cpuinfo_path="/proc/cpuinfo"):
    """Whether this CPU has bfloat16 matrix or dot-product instructions (AMX_BF16,
    AVX512_BF16), from its flags; False where they cannot be read."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def current_device(backend, tensor=None):
    """The `Device` that the backend computes on (for torch, `tensor`'s)."""
    if backend == "torch":
        import torch

        device = getattr(tensor, "device", None)
        if device is not None and device.type == "cuda":
            return Device("gpu", tuple(torch.cuda.get_device_capability(device)))
        return Device("cpu", None, cpu_multiplies_bfloat16())
    if backend == "jax":
        import jax

        if jax.default_backend() != "gpu":
            return CPU
        capability = getattr(jax.devices()[0], "compute_capability", None)  # CUDA only
        if capability is None:
            return Device("gpu", None)
        return Device("gpu", tuple(int(part) for part in str(capability).split(".")[:2]))
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return Device("gpu", None)
        # Eigen multiplies bfloat16 by converting it; oneDNN uses the CPU's units.
        from pygqa.kernels.tf_blockwise import uses_onednn

        return Device("cpu", None, cpu_multiplies_bfloat16() and uses_onednn())
    return CPU
