"""The machine a benchmark ran on: CPU model, cores, vector and matrix
extensions, caches, and the BLAS / oneDNN each library uses.

Ratios between implementations move with the CPU (a table made on one CPU
did not hold on another), so every result records where it was measured.
Everything here is read, never guessed: a field that cannot be read is None.
"""

import os
import platform
import subprocess

# /proc/cpuinfo flags worth naming, in the order a caption lists them.
# x86: AVX2/FMA (256-bit), AVX-512 (512-bit), AVX512_BF16 / AVX512_VNNI
# (bfloat16 and int8 dot products), AMX (matrix tiles). ARM: NEON, SVE, BF16.
_FLAGS = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX512_VNNI"),
    ("avx512_bf16", "AVX512_BF16"),
    ("avx512_fp16", "AVX512_FP16"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX_BF16"),
    ("asimd", "NEON"),
    ("sve", "SVE"),
    ("bf16", "BF16"),
)


def cpu_info(cpuinfo_path="/proc/cpuinfo", cache_root="/sys/devices/system/cpu/cpu0/cache"):
    """{model, logical_cpus, usable_cpus, extensions, caches} of this machine."""
    model, flags = None, set()
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "Model", "Hardware") and model is None:
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "model": model or platform.processor() or None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "extensions": [label for flag, label in _FLAGS if flag in flags],
        "has_amx": "amx_tile" in flags,
        "caches": _caches(cache_root),
    }


def _caches(root):
    """Per-level data/unified cache sizes of cpu0, e.g. {"L1d": "48K", "L2": "1024K"}."""
    caches = {}
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("index"))
    except OSError:
        return caches
    for entry in entries:
        try:
            level, kind, size = (
                open(os.path.join(root, entry, name)).read().strip()
                for name in ("level", "type", "size")
            )
        except OSError:
            continue
        if kind == "Instruction":
            continue
        caches[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return caches


def libraries(backend):
    """The math libraries behind `backend` and numpy: names and versions where readable."""
    info = {"numpy_blas": _numpy_blas()}
    reader = {"tensorflow": _tensorflow, "torch": _torch, "jax": _jax}.get(backend)
    if reader is not None:
        info.update(reader())
    return info


def _numpy_blas():
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older numpy prints instead of returning  # noqa: BLE001
        return None
    return f"{blas.get('name')} {blas.get('version')}".strip()


def _tensorflow():
    import tensorflow as tf

    try:  # oneDNN is on by default on x86; TF_ENABLE_ONEDNN_OPTS=0 turns it off
        from tensorflow.python.util import _pywrap_util_port

        built_with = bool(_pywrap_util_port.IsMklEnabled())
    except ImportError:
        built_with = None
    switch = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    enabled = built_with and switch not in ("0", "false", "False")
    return {
        "tensorflow": tf.__version__,
        "tf_onednn": "on" if enabled else "off" if built_with is not None else None,
        "TF_ENABLE_ONEDNN_OPTS": switch,
    }


def _torch():
    import torch

    config = torch.__config__.show()
    onednn = next((line.strip(" -") for line in config.splitlines() if "MKL-DNN" in line
                   or "oneDNN" in line), None)
    capability = next((line.split(":", 1)[1].strip() for line in config.splitlines()
                       if "CPU capability usage" in line), None)
    return {
        "torch": torch.__version__,
        "torch_onednn": onednn if torch.backends.mkldnn.is_available() else "off",
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else None,
        "torch_cpu_capability": capability,
        "torch_threads": torch.get_num_threads(),
    }


def _jax():
    import jax
    import jaxlib

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_platform": jax.default_backend(),  # XLA:CPU compiles its own kernels
    }


def describe():
    """cpu_info() plus the library fields: what results.json keeps under meta["machine"]."""
    import keras

    return {"cpu": cpu_info(), "libraries": libraries(keras.backend.backend())}


def kind(cpu=None):
    """A short name of the CPU kind for results folders: vendor, family and the widest
    matrix or vector unit, e.g. "intel-xeon-amx", "amd-epyc-avx2"."""
    cpu = cpu or cpu_info()
    words = [w for w in (cpu.get("model") or platform.machine()).lower().replace("(r)", "")
             .replace("(tm)", "").split() if w.isalpha() and w not in ("processor", "cpu")]
    extensions = cpu.get("extensions") or []
    unit = ("amx" if cpu.get("has_amx") else "avx512" if "AVX-512" in extensions
            else "avx2" if "AVX2" in extensions else None)
    return "-".join(words[:2] + ([unit] if unit else []))


def caption(machine):
    """One line for table and plot captions: model, cores, extensions, math library."""
    if not machine:
        return "CPU not recorded"
    cpu, libs = machine.get("cpu", {}), machine.get("libraries", {})
    extensions = " ".join(cpu.get("extensions") or []) or "no AVX2/AVX-512/AMX"
    if cpu.get("extensions") and not cpu.get("has_amx"):
        extensions += " (no AMX)"
    cores = cpu.get("usable_cpus") or cpu.get("logical_cpus")
    library = None
    if libs.get("tf_onednn"):
        library = f"TF oneDNN {libs['tf_onednn']}"
    elif libs.get("torch_onednn"):
        library = f"torch {libs['torch_onednn']}, {libs.get('torch_blas') or 'no MKL'}"
    elif libs.get("jax_platform"):
        library = f"XLA:{libs['jax_platform'].upper()} (jaxlib {libs.get('jaxlib')})"
    parts = [cpu.get("model") or "unknown CPU", f"{cores} cores", extensions]
    caches = cpu.get("caches") or {}
    if caches:
        parts.append("caches " + " ".join(f"{k} {v}" for k, v in caches.items()))
    if library:
        parts.append(library)
    return ", ".join(parts)


def pygqa_commit():
    """Which pygqa was measured (`git describe --always --dirty` of its checkout), or
    None outside a git checkout."""
    import pygqa

    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"],
                                   cwd=os.path.dirname(pygqa.__file__), capture_output=True,
                                   text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return described or None
