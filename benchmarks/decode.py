"""Decoding with a key/value cache (`python -m benchmarks.decode [--lengths ...]`):
grouped (8 query / 2 key-value heads) against multi-head (8 / 8) attention, the same
pygqa layer with a different head count.

One decode step is one new position per sequence attending over a cache of
`length` positions (its last slot is written by the step). Steps run the way
users run each backend: `jax.jit` with the cache donated (updated in place, as a
generation loop does), `tf.function`, eager torch under `no_grad`. The two
layouts are timed interleaved, and the ratio is the median of per-round ratios.
The cache size is exact: `2 x batch x length x kv_heads x head_dim x 4` bytes.
"""

import argparse
import datetime
import json
import os
import statistics

import keras
import numpy as np

from pygqa.bench import backends, machine, timing
from pygqa.bench.shapes import parse_lengths

D_MODEL, HEAD_DIM, QUERY_HEADS = 512, 64, 8
LAYOUTS = {"gqa": 2, "mha": 8}  # key/value heads
LENGTHS = (512, 1024, 2048, 4096, 8192)


def decode_step(layer, batch, length):
    """A `backends.Step` running one decode step at the cache's last position."""
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal((batch, 1, D_MODEL), dtype=np.float32))
    layer(x)  # build
    cache = keras.ops.convert_to_tensor(
        rng.standard_normal((batch, 2, length, layer.num_key_value_heads, HEAD_DIM),
                            dtype=np.float32)
    )
    index = keras.ops.convert_to_tensor(length - 1, "int32")

    def step(x, cache, index):
        return layer(x, cache=cache, cache_update_index=index, use_causal_mask=True)

    state = {"cache": cache}
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(step, donate_argnums=1)

        def run():
            output, state["cache"] = compiled(x, state["cache"], index)
            return output

        return backends.Step(run)
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(step, jit_compile=False)

        def run():
            output, state["cache"] = compiled(x, state["cache"], index)
            return output

        return backends.Step(run, prepare=lambda: compiled.get_concrete_function(x, cache, index))
    import torch

    def run():
        with torch.no_grad():
            output, state["cache"] = step(x, state["cache"], index)
        return output

    return backends.Step(run)


def cache_bytes(batch, length, num_key_value_heads, itemsize=4):
    return 2 * batch * length * num_key_value_heads * HEAD_DIM * itemsize


def run_decode(lengths=LENGTHS, batch=4, rounds=7, out=None):
    """Times decode steps of GQA and MHA at each cache length; returns the rows.

    With `out`, writes decode.md and decode.json there.
    """
    import pygqa

    rows = []
    for length in lengths:
        steps = {}
        for name, kv_heads in LAYOUTS.items():
            layer = pygqa.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, kv_heads, seed=1)
            steps[name] = decode_step(layer, batch, length)
        samples = timing.time_interleaved(steps, rounds, warmup=2)
        row = {"length": length, "batch": batch}
        for name, kv_heads in LAYOUTS.items():
            row[f"{name}_ms"] = 1e3 * statistics.median(samples[name])
            row[f"{name}_cache_mib"] = cache_bytes(batch, length, kv_heads) / 2**20
        row["time_ratio"] = timing.paired_ratio(samples, "mha", reference="gqa")
        row["cache_ratio"] = row["mha_cache_mib"] / row["gqa_cache_mib"]
        rows.append(row)
        print(_format_row(row), flush=True)
    if out:
        _write(rows, out)
    return rows


def _format_row(row):
    return (f"| {row['length']} | {row['gqa_ms']:.3f} | {row['mha_ms']:.3f} | "
            f"{row['time_ratio']:.2f}x | {row['gqa_cache_mib']:.1f} | "
            f"{row['mha_cache_mib']:.1f} | {row['cache_ratio']:.1f}x |")


def _write(rows, out):
    os.makedirs(out, exist_ok=True)
    backend = keras.backend.backend()
    mode = {"jax": "jax.jit, cache donated", "tensorflow": "tf.function",
            "torch": "eager, no_grad"}[backend]
    header = (
        f"# Decode step: GQA (8 query / 2 kv heads) vs MHA (8 / 8), {backend} ({mode})\n\n"
        f"One new position per sequence, batch {rows[0]['batch']}, d_model {D_MODEL}, "
        f"head_dim {HEAD_DIM}, float32, cache of `length` positions. Time ratio: median of "
        "per-round MHA/GQA ratios (> 1: GQA faster). Written "
        f"{datetime.date.today()}, on {machine.caption(machine.describe())}.\n\n"
        "| cache length | GQA step (ms) | MHA step (ms) | MHA/GQA time | GQA cache (MiB) | "
        "MHA cache (MiB) | MHA/GQA cache |\n|---|---|---|---|---|---|---|\n"
    )
    with open(os.path.join(out, "decode.md"), "w") as f:
        f.write(header + "\n".join(_format_row(r) for r in rows) + "\n")
    with open(os.path.join(out, "decode.json"), "w") as f:
        json.dump({"backend": backend, "rows": rows}, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)),
                        help="cache lengths (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="sequences (default: 4)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default: 7)")
    parser.add_argument("--out",
                        help="results folder (default: benchmarks/results/<CPU kind>/<backend>)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("benchmarks", "results", machine.kind(),
                                   keras.backend.backend())
    run_decode(lengths=parse_lengths(args.lengths), batch=args.batch, rounds=args.rounds, out=out)
    print(f"Written: {out}/decode.md, decode.json")


if __name__ == "__main__":
    main()
