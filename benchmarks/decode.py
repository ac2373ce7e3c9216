"""Decoding with a key/value cache (`python -m benchmarks.decode [--lengths ...]
[--variants ...]`): grouped (8 query / 2 key-value heads) against multi-head (8 / 8)
attention, the same pygqa layer with a different head count.

Variants (each a table): `plain`; `rotary` (rope_max_wavelength=10000, the keys
rotated once when written); `window` (sliding_window=512 over a cache of
`length` positions); `rolling` (sliding_window=512 over a rolling cache of 512
slots: the step is position `length - 1`, the memory a windowed decoder needs).

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
WINDOW = 512
# Layer options and cache slots (None: `length`) of each variant.
VARIANTS = {
    "plain": ({}, None),
    "rotary": ({"rope_max_wavelength": 10000}, None),
    "window": ({"sliding_window": WINDOW}, None),
    "rolling": ({"sliding_window": WINDOW}, WINDOW),
}


def decode_step(layer, batch, length, slots=None):
    """A `backends.Step` running one decode step at position `length - 1`, with a
    cache of `slots` positions (default `length`: the step writes its last one)."""
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal((batch, 1, D_MODEL), dtype=np.float32))
    layer(x)  # build
    cache = keras.ops.convert_to_tensor(
        rng.standard_normal((batch, 2, slots or length, layer.num_key_value_heads, HEAD_DIM),
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


def run_decode(lengths=LENGTHS, batch=4, rounds=7, out=None, variants=("plain",)):
    """Times decode steps of GQA and MHA at each cache length and variant; returns
    the rows (each with its `variant`).

    With `out`, writes decode.md and decode.json there.
    """
    import pygqa

    rows = []
    for variant in variants:
        options, slots = VARIANTS[variant]
        for length in lengths:
            steps = {}
            for name, kv_heads in LAYOUTS.items():
                layer = pygqa.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, kv_heads, seed=1,
                                                  **options)
                steps[name] = decode_step(layer, batch, length, slots)
            samples = timing.time_interleaved(steps, rounds, warmup=2)
            row = {"variant": variant, "length": length, "batch": batch,
                   "slots": slots or length}
            for name, kv_heads in LAYOUTS.items():
                row[f"{name}_ms"] = 1e3 * statistics.median(samples[name])
                row[f"{name}_cache_mib"] = cache_bytes(batch, slots or length, kv_heads) / 2**20
            row["time_ratio"] = timing.paired_ratio(samples, "mha", reference="gqa")
            row["time_ratio_min"], row["time_ratio_max"] = _ratio_range(samples)
            row["cache_ratio"] = row["mha_cache_mib"] / row["gqa_cache_mib"]
            rows.append(row)
            print(variant, _format_row(row), flush=True)
    if out:
        _write(rows, out)
    return rows


def _ratio_range(samples):
    ratios = [m / g for m, g in zip(samples["mha"], samples["gqa"], strict=True)]
    return min(ratios), max(ratios)


def _format_row(row):
    spread = ""
    if "time_ratio_min" in row:
        spread = f" ({row['time_ratio_min']:.2f}-{row['time_ratio_max']:.2f})"
    return (f"| {row['length']} | {row.get('slots', row['length'])} | {row['gqa_ms']:.3f} | "
            f"{row['mha_ms']:.3f} | {row['time_ratio']:.2f}x{spread} | "
            f"{row['gqa_cache_mib']:.1f} | {row['mha_cache_mib']:.1f} | "
            f"{row['cache_ratio']:.1f}x |")


def _write(rows, out):
    os.makedirs(out, exist_ok=True)
    backend = keras.backend.backend()
    mode = {"jax": "jax.jit, cache donated", "tensorflow": "tf.function",
            "torch": "eager, no_grad"}[backend]
    header = (
        f"# Decode step: GQA (8 query / 2 kv heads) vs MHA (8 / 8), {backend} ({mode})\n\n"
        f"One new position per sequence at position `length - 1`, batch {rows[0]['batch']}, "
        f"d_model {D_MODEL}, head_dim {HEAD_DIM}, float32, a cache of `slots` positions. "
        "Time ratio: median of per-round MHA/GQA ratios, smallest and largest round in "
        "brackets (> 1: GQA faster). Written "
        f"{datetime.date.today()} at pygqa {machine.pygqa_commit()}, on "
        f"{machine.caption(machine.describe())}; load average (1 min) "
        f"{os.getloadavg()[0]:.1f} at the end.\n"
    )
    titles = {
        "plain": "No window, no rotary positions",
        "rotary": "Rotary positions (`rope_max_wavelength=10000`)",
        "window": f"`sliding_window={WINDOW}` over a cache of `length` positions",
        "rolling": f"`sliding_window={WINDOW}` over a rolling cache of {WINDOW} slots",
    }
    tables = []
    for variant in dict.fromkeys(r.get("variant", "plain") for r in rows):
        tables.append(
            f"## {titles[variant]}\n\n"
            "| length | slots | GQA step (ms) | MHA step (ms) | MHA/GQA time | GQA cache (MiB) "
            "| MHA cache (MiB) | MHA/GQA cache |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(_format_row(r) for r in rows if r.get("variant", "plain") == variant)
            + "\n")
    with open(os.path.join(out, "decode.md"), "w") as f:
        f.write(header + "\n" + "\n".join(tables))
    with open(os.path.join(out, "decode.json"), "w") as f:
        json.dump({"backend": backend, "rows": rows}, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)),
                        help="cache lengths (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="sequences (default: 4)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default: 7)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="of " + ", ".join(VARIANTS) + " (default: all)")
    parser.add_argument("--out",
                        help="results folder (default: benchmarks/results/<CPU kind>/<backend>)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("benchmarks", "results", machine.kind(),
                                   keras.backend.backend())
    run_decode(lengths=parse_lengths(args.lengths), batch=args.batch, rounds=args.rounds, out=out,
               variants=tuple(args.variants.split(",")))
    print(f"Written: {out}/decode.md, decode.json")


if __name__ == "__main__":
    main()
