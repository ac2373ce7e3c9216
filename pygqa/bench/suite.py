"""The whole benchmark: parity check, interleaved timing, memory, memory scaling."""

import contextlib
import datetime
import os
import platform
import statistics

import keras
import numpy as np
from tqdm import tqdm

from pygqa.bench import backends, impls, machine, memory, reference, report, timing
from pygqa.bench.shapes import (
    D_MODEL,
    MODES,
    QUICK_SCALING_LENGTHS,
    QUICK_SHAPES,
    SCALING_LENGTHS,
    SHAPES,
    Shape,
    layer_flops,
)

# float32: outputs must agree with Keras's to float32 precision relative to their scale.
PARITY_RTOL = 1e-5
# Half precision: pygqa's error against float64 may exceed Keras's by this factor at
# most (the two round differently; neither may be much worse than the other).
ACCURACY_MARGIN = 1.25
HALF_POLICIES = ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def run_suite(
    shapes=None,
    rounds=5,
    budget_s=30.0,
    memory_check=True,
    scaling_lengths=None,
    out=None,
    quick=False,
    impl_names=impls.IMPLS,
    stand_in=False,
    memory_limit_mib=8 * 1024,
    progress=True,
    policy="float32",
    gate=False,
):
    """Run the benchmark for the backend in KERAS_BACKEND and return its rows.

    Args:
        shapes: list of `Shape`s (default: A-F; with `quick`, D and A).
        rounds: timed rounds per shape and mode (each runs every implementation).
        budget_s: fewer rounds (no fewer than 3) where `rounds` would take longer
            than this many seconds for one shape and mode; None: always `rounds`.
        memory_check: measure peak memory (forward+backward) in subprocesses.
        scaling_lengths: lengths for the pygqa memory-scaling series (batch 1,
            forward+backward); default 1024..16384 (quick: 1024, 2048); `()` skips it.
        out: folder for results.md / results.png / results.json (None: write nothing).
        quick: a ~1 minute smoke run (fewer shapes, 2 rounds).
        impl_names: implementations to compare; "pygqa" must be one of them.
        stand_in: use Keras's GQA layer in place of pygqa (tests the harness only).
        memory_limit_mib: a memory subprocess is stopped past this RSS.
        progress: show a tqdm progress bar.
        policy: the layers' Keras dtype policy ("float32", "mixed_bfloat16", ...).
        gate: the gated layers (`use_gate=True`): pygqa against Keras's GQA only, as
            MultiHeadAttention has no gate.

    Returns:
        A list of dicts, one per (kind, shape, mode, implementation): kind "time"
        rows carry median_ms, ratio (median over rounds of this implementation's
        time / pygqa's: > 1 means pygqa is faster), gemm_fraction, parity_err,
        error_f64 (against the float64 reference) and, for fwdbwd, peak_mib; kind
        "scaling" rows carry peak_mib.
    """
    if quick:
        shapes = shapes or [SHAPES[n] for n in QUICK_SHAPES]
        rounds = min(rounds, 2)
    shapes = shapes or list(SHAPES.values())
    if scaling_lengths is None:
        scaling_lengths = QUICK_SCALING_LENGTHS if quick else SCALING_LENGTHS
    if not memory_check:
        scaling_lengths = ()
    meta = _metadata(rounds, stand_in)
    meta["policy"] = policy
    meta["gate"] = gate
    if gate:
        impl_names = tuple(i for i in impl_names if i != "keras_mha")
    compute = keras.DTypePolicy(policy).compute_dtype
    meta["compute_dtype"] = compute

    total = len(shapes) * len(MODES) + 1
    total += (len(shapes) * len(impl_names) + len(scaling_lengths)) if memory_check else 0
    with _progress_bar(total, progress) as bar:
        bar.set_description("GEMM throughput")
        meta["gemm_gflops"] = timing.gemm_gflops()
        meta["gemm_gflops_bfloat16"] = timing.gemm_gflops(dtype="bfloat16")
        bar.update()
        layers = impls.build_layers(impl_names, stand_in=stand_in, policy=policy, gate=gate)
        rows = []
        for shape in shapes:
            x = backends.make_input(shape.batch, shape.length, D_MODEL)
            expected = reference.gqa_forward(impls.gqa_weights(gate=gate), backends.to_numpy(x),
                                             causal=shape.causal)
            for mode in MODES:
                bar.set_description(f"time {shape.name} {mode}")
                rows += _time_case(layers, shape, mode, x, rounds, budget_s, expected,
                                   half=policy in HALF_POLICIES)
                bar.update()
            del x, expected
        if memory_check:
            for row in rows:
                if row["mode"] == "fwdbwd":
                    bar.set_description(f"memory {row['shape']} {row['impl']}")
                    result = memory.measure_peak(
                        row["impl"], _shape_of(row), stand_in=stand_in, limit_mib=memory_limit_mib,
                        policy=policy, gate=gate,
                    )
                    row.update(peak_mib=result["peak_mib"], memory_status=result["status"])
                    bar.update()
            for length in scaling_lengths:
                bar.set_description(f"memory scaling {length}")
                shape = Shape(f"L{length}", 1, length)
                result = memory.measure_peak(
                    "pygqa", shape, stand_in=stand_in, limit_mib=memory_limit_mib, policy=policy,
                    gate=gate,
                )
                row = dict(_row_base(shape, "fwdbwd", "pygqa"), kind="scaling")
                row.update(peak_mib=result["peak_mib"], memory_status=result["status"])
                rows.append(row)
                bar.update()
    # Measured again at the end, keeping the better: on a shared machine a busy moment
    # would understate the roofline and overstate every efficiency.
    meta["gemm_gflops"] = max(meta["gemm_gflops"], timing.gemm_gflops())
    meta["gemm_gflops_bfloat16"] = max(meta["gemm_gflops_bfloat16"],
                                       timing.gemm_gflops(dtype="bfloat16"))
    meta["load_end"] = round(os.getloadavg()[0], 1)  # other processes compete for the cores
    # The roofline of the dtype the products run in (float16 has no separate one here).
    roofline = meta["gemm_gflops"] if compute == "float32" else meta["gemm_gflops_bfloat16"]
    meta["roofline_gflops"] = roofline
    for row in rows:
        row["backend"] = meta["backend"]
        if row.get("kind") == "time":
            row["gemm_fraction"] = row["flops"] / (row["median_ms"] / 1e3) / 1e9 / roofline
    if out:
        report.write_all(rows, meta, out)
    return rows


def _metadata(rounds, stand_in):
    import pygqa

    commit = machine.pygqa_commit()
    return {
        "backend": backends.BACKEND,
        "commit": commit,
        "keras": keras.__version__,
        "pygqa": getattr(pygqa, "__version__", "unknown")
        + (" (STAND-IN: keras GQA)" if stand_in else ""),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": machine.describe(),  # CPU, extensions, caches, BLAS/oneDNN
        "rounds": rounds,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_start": round(os.getloadavg()[0], 1),
    }


def _row_base(shape, mode, impl):
    return {
        "kind": "time",
        "shape": shape.name,
        "batch": shape.batch,
        "length": shape.length,
        "scores": shape.scores,
        "causal": shape.causal,
        "mode": mode,
        "impl": impl,
    }


def _shape_of(row):
    return Shape(row["shape"], row["batch"], row["length"], row["scores"], row["causal"])


def _time_case(layers, shape, mode, x, rounds, budget_s, expected, half):
    steps = {
        name: backends.make_step(layer, x, mode, shape.call_kwargs)
        for name, layer in layers.items()
    }
    errors, errors_f64 = _parity(steps, shape, mode, expected)
    if half:  # pygqa may not be less accurate than Keras's GQA (both against float64)
        limit = ACCURACY_MARGIN * errors_f64["keras_gqa"]
        ok = {name: error <= limit for name, error in errors_f64.items()}
    else:
        ok = {name: error <= PARITY_RTOL for name, error in errors.items()}
    for name in (n for n, good in ok.items() if not good):
        tqdm.write(f"WARNING: {name} at {shape.label} {mode}: {errors[name]:.2e} from keras GQA, "
                   f"{errors_f64[name]:.2e} from float64 (keras GQA: "
                   f"{errors_f64['keras_gqa']:.2e})")
    samples = timing.time_interleaved(steps, rounds, budget_s=budget_s)
    flops = layer_flops(shape, mode)
    rows = []
    for name in steps:
        median = statistics.median(samples[name])
        rows.append(
            dict(
                _row_base(shape, mode, name),
                rounds=len(samples[name]),
                median_ms=median * 1e3,
                ratio=timing.paired_ratio(samples, name),
                ratio_spread=list(timing.ratio_spread(samples, name)),
                flops=flops,
                gemm_fraction=None,  # set against the roofline measured at the end
                parity_err=errors[name],
                error_f64=errors_f64[name],
                parity_ok=ok[name],
            )
        )
    return rows


def _parity(steps, shape, mode, expected):
    """Max |out - ref| / max |ref| of each step against Keras's GQA layer (output and
    scores) and of its output against the float64 reference, computed with the very
    functions that are then timed."""
    kw = shape.call_kwargs
    outputs = {name: backends.forward_outputs(step.run(), kw, mode) for name, step in steps.items()}
    ref_out, ref_scores = (None if a is None else a.astype(np.float64)
                           for a in outputs["keras_gqa"])
    errors, errors_f64 = {}, {}
    for name, (out, scores) in outputs.items():
        out = out.astype(np.float64)
        err = np.max(np.abs(out - ref_out)) / np.max(np.abs(ref_out))
        if scores is not None:
            scores = scores.astype(np.float64)
            err = max(err, np.max(np.abs(scores - ref_scores)) / np.max(np.abs(ref_scores)))
        errors[name] = float(err)
        errors_f64[name] = float(np.max(np.abs(out - expected)) / np.max(np.abs(expected)))
    return errors, errors_f64


@contextlib.contextmanager
def _progress_bar(total, enabled):
    bar = tqdm(total=total, disable=not enabled, unit="case", dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
