"""Sliding-window benchmark: pygqa's layer against Keras's, both with a window.

`python -m benchmarks.window [--lengths 4096,8192,16384] [--window 512]` runs
one backend (KERAS_BACKEND) and rewrites benchmarks/results/<CPU kind>/window.md from
the results of every backend run so far on that kind of CPU (window.json beside it).

Both sides are the layers users build, with the same weights:
`keras.layers.GroupQueryAttention(64, 8, 2, sliding_window=W)` and
`pygqa.GroupQueryAttention(64, 8, 2, sliding_window=W)` (which picks its band
path itself: `pygqa.kernels.paths.choose_path`), called with
`use_causal_mask=True`. Self-attention, batch 1, float32, forward (inference)
and forward+backward (gradients of the input and every weight), run the way
users run each backend (bench/backends.py). Times: paired, interleaved rounds
(bench/timing.py). Peak memory of forward+backward: one call in a fresh
process each, above the process's baseline (bench/memory_worker.py).
"""

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

from pygqa.bench import backends, impls, machine, timing
from pygqa.bench.shapes import D_MODEL, HEAD_DIM, KV_HEADS, QUERY_HEADS

# The worker runs as `python -m benchmarks.window` from here.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LENGTHS = (4096, 8192, 16384)
WINDOW = 512
MODES = ("fwd", "fwdbwd")
# Keras's layer forms every (T, S) logit: at 16384 one score tensor alone is
# 8 GiB, and fwd+bwd holds several. Longer lengths are timed for pygqa only.
KERAS_MAX_LENGTH = 8192
# One folder per CPU kind: another machine's tables stay beside this one's.
RESULTS = os.path.join("benchmarks", "results", machine.kind())
MIB = 2**20


def build(impl, window):
    import pygqa

    init = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
    make = pygqa.GroupQueryAttention if impl == "pygqa" else keras.layers.GroupQueryAttention
    layer = make(HEAD_DIM, QUERY_HEADS, KV_HEADS, sliding_window=window, **init)
    layer.build((1, 4, D_MODEL), (1, 4, D_MODEL))
    layer.set_weights(impls.gqa_weights())
    return layer


def chosen_path(length, window):
    """The path pygqa's layer takes for this call, and why."""
    from pygqa.kernels import paths

    device = paths.current_device(backends.BACKEND)
    chosen = paths.choose_path(backends.BACKEND, device, "float32", head_dim=HEAD_DIM,
                               target_length=length, source_length=length, masked=False,
                               causal=True, window=window)
    return chosen.name


def run(lengths, window, rounds, modes=MODES):
    """Times (each mode) and peak memory (fwd+bwd) of both layers; returns this
    backend's record."""
    kw = {"use_causal_mask": True}
    cpu = machine.cpu_info()["model"] or "unknown"
    record = {"backend": backends.BACKEND, "window": window, "cpu": cpu,
              "machine": machine.caption(machine.describe()),
              "cores": os.cpu_count(), "keras": keras.__version__,
              "commit": machine.pygqa_commit(),
              "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "load_start": round(os.getloadavg()[0], 1), "rows": []}
    layers = {name: build(name, window) for name in ("keras", "pygqa")}
    for length in lengths:
        names = ["keras", "pygqa"] if length <= KERAS_MAX_LENGTH else ["pygqa"]
        x = backends.make_input(1, length, D_MODEL)
        for mode in modes:
            row = time_mode(layers, names, x, mode, rounds, kw)
            row.update(length=length, path=chosen_path(length, window))
            if mode == "fwdbwd":
                for name in names:
                    row[f"{name}_mib"] = peak_in_subprocess(name, length, window)
            record["rows"].append(row)
            print(json.dumps(row), flush=True)
        del x
        gc.collect()
    record["load_end"] = round(os.getloadavg()[0], 1)
    return record


def time_mode(layers, names, x, mode, rounds, kw):
    """One row: paired times of `names` in `mode`, the ratio and the outputs' parity."""
    steps = {n: backends.make_step(layers[n], x, mode, kw) for n in names}
    outputs = {n: backends.forward_outputs(steps[n].run(), kw, mode)[0] for n in names}
    # Two untimed runs each: the first calls after Keras's multi-GiB temporaries
    # were measured up to 2x slower (the allocator is still growing its heap).
    samples = timing.time_interleaved(steps, rounds, warmup=2, min_sample_s=0.0)
    row = {"mode": mode, "rounds": len(samples["pygqa"]),
           "pygqa_ms": 1e3 * statistics.median(samples["pygqa"])}
    if "keras" in names:
        ratios = [k / p for k, p in zip(samples["keras"], samples["pygqa"], strict=True)]
        reference = outputs["keras"]
        row.update(keras_ms=1e3 * statistics.median(samples["keras"]),
                   ratio=statistics.median(ratios), ratio_min=min(ratios),
                   ratio_max=max(ratios),
                   parity=float(np.abs(outputs["pygqa"] - reference).max()
                                / np.abs(reference).max()))
    # pygqa again on its own: right after a multi-GiB Keras call its times
    # were inflated up to 2x (JAX at 8192), which hides how they grow.
    alone = timing.time_interleaved({"pygqa": steps["pygqa"]}, rounds, warmup=1,
                                    min_sample_s=0.0)["pygqa"]
    row["pygqa_alone_ms"] = 1e3 * statistics.median(alone)
    return row


def peak_in_subprocess(impl, length, window, limit_mib=16 * 1024, timeout_s=900):
    """Peak RSS (MiB) above baseline of one fwd+bwd call, in a fresh process; None past
    the limit (the child is stopped) or on failure."""
    import psutil

    spec = json.dumps({"impl": impl, "length": length, "window": window})
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.window", "--worker", spec],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPOSITORY)
    child, start = psutil.Process(proc.pid), time.monotonic()
    while proc.poll() is None:
        try:
            too_big = child.memory_info().rss > limit_mib * MIB
        except psutil.NoSuchProcess:
            break
        if too_big or time.monotonic() - start > timeout_s:
            proc.kill()
            proc.communicate()
            return None
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        print(f"memory worker failed ({impl}, {length}): {err.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def _worker(spec):
    """In the child: build, compile, take the baseline, run once, print the peak."""

    from pygqa.bench.memory_worker import peak_of_run

    layer = build(spec["impl"], spec["window"])
    kw = {"use_causal_mask": True}
    backends.make_step(layer, backends.make_input(1, 128, D_MODEL), "fwdbwd", kw).run()
    step = backends.make_step(layer, backends.make_input(1, spec["length"], D_MODEL),
                              "fwdbwd", kw)
    step.prepare()  # compile / trace: compiler memory is not the call's
    peak, baseline = peak_of_run(step)
    print(json.dumps({"peak_mib": (peak - baseline) / MIB}))


def markdown(records):
    """window.md from {backend: record}."""
    any_record = next(iter(records.values()))
    lines = [
        "# Sliding window: pygqa.GroupQueryAttention vs keras.layers.GroupQueryAttention",
        "",
        f"Self-attention, batch 1, float32, d_model {D_MODEL}, head_dim {HEAD_DIM}, "
        f"{QUERY_HEADS} query / {KV_HEADS} key-value heads, `sliding_window="
        f"{any_record['window']}`, `use_causal_mask=True`, the same weights in both layers "
        "(`python -m benchmarks.window`). `fwd`: the inference call; `fwd+bwd`: gradients of "
        "the input and all weights. `path`: the attention path pygqa's layer chose "
        "(`pygqa.kernels.paths.choose_path`). Time: median ms over paired interleaved "
        "rounds; `Keras/pygqa` = median of per-round ratios (min-max across rounds; > 1: "
        "pygqa faster). Memory: peak RSS above baseline of one fwd+bwd call, each in a "
        f"fresh process. Keras is not run past {KERAS_MAX_LENGTH} (quadratic: one 16384 "
        "score tensor is 8 GiB).",
        "",
        "`pygqa alone ms`: pygqa timed again without Keras in between (how its time grows "
        "with the length).",
        "",
        "| backend | length | mode | path | rounds | Keras ms | pygqa ms | Keras/pygqa (min-max) "
        "| pygqa alone ms | Keras MiB | pygqa MiB | pygqa/Keras memory | parity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    for backend, record in records.items():
        for row in record["rows"]:
            ratio = "–"
            if row.get("ratio") is not None:
                ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
            memory = "–"
            if row.get("keras_mib") and row.get("pygqa_mib") is not None:
                memory = f"{row['pygqa_mib'] / row['keras_mib']:.3f}"
            mode = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}[row.get("mode", "fwdbwd")]
            lines.append(
                f"| {backend} | {row['length']} | {mode} | {row.get('path', '–')} | "
                f"{row['rounds']} | {fmt(row.get('keras_ms'), '.0f')} | {row['pygqa_ms']:.0f} | "
                f"{ratio} | {fmt(row.get('pygqa_alone_ms'), '.0f')} | "
                f"{fmt(row.get('keras_mib'), '.0f')} | {fmt(row.get('pygqa_mib'), '.0f')} | "
                f"{memory} | {fmt(row.get('parity'), '.1e')} |"
            )
    lines += ["", "| backend | machine | keras | pygqa commit | date | load avg (1 min) "
              "start / end |", "|---|---|---|---|---|---|"]
    for backend, r in records.items():
        lines.append(f"| {backend} | {r.get('machine', r['cpu'])} | {r['keras']} | "
                     f"{r.get('commit', '–')} | {r['date']} | "
                     f"{r['load_start']} / {r['load_end']} |")
    lines += ["", "`parity`: max |pygqa - Keras| / max |Keras| of the outputs.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.window", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES), help="fwd, fwdbwd or both")
    parser.add_argument("--out", default=RESULTS, help="folder of window.md / window.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return 0
    record = run([int(n) for n in args.lengths.split(",")], args.window, args.rounds,
                 tuple(args.modes.split(",")))
    path = os.path.join(args.out, "window.json")
    records = {}
    if os.path.exists(path):
        with open(path) as f:
            records = json.load(f)
    records[record["backend"]] = record
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(args.out, "window.md"), "w") as f:
        f.write(markdown(records))
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
