"""torch: pygqa's layer against its floor, the same work written as bare torch calls.

`python -m benchmarks.floor [--shapes A,B,C,D,F] [--rounds 9]` (KERAS_BACKEND=torch)
writes benchmarks/results/<CPU kind>/torch/floor.md. The floor is what the layer cannot
do without: the four projection products with their biases and one
`scaled_dot_product_attention(enable_gqa=True)` call, with the same weights,
no Keras layer around any of it. What pygqa costs above it (its own Python,
Keras's five `Layer.__call__`s, layout changes, mask preparation) is the
ratio pygqa / floor. Both run the way the suite runs torch (bench/backends.py:
eager, forward under no_grad, backward with loss.backward()), in paired,
interleaved rounds (bench/timing.py).
"""

import argparse
import datetime
import os
import statistics
import sys

import numpy as np

from pygqa.bench import backends, impls, machine, timing
from pygqa.bench.shapes import D_MODEL, HEAD_DIM, KV_HEADS, MODES, QUERY_HEADS, parse_shapes

DEFAULT_SHAPES = "A,B,C,D,F"
OUT = os.path.join("benchmarks", "results", machine.kind(), "torch", "floor.md")


class _Weight:
    """What bench/backends.py reads of a Keras variable: `.value`."""

    def __init__(self, value):
        self.value = value


class FloorAttention:
    """The layer's function as bare torch calls, called like the layer: `f(x, x, ...)`."""

    def __init__(self, weights):
        import torch

        self.params = [torch.nn.Parameter(torch.as_tensor(np.asarray(w))) for w in weights]
        self.trainable_weights = [_Weight(p) for p in self.params]

    def __call__(self, query, value, training=None, use_causal_mask=False):
        import torch.nn.functional as F

        wq, bq, wk, bk, wv, bv, wo, bo = self.params
        b, t, m = query.shape
        s = value.shape[1]
        # (b, t, m) x (m, heads * h), viewed as (b, heads, t, h) for SDPA.
        q = (query @ wq.reshape(m, -1) + bq.reshape(-1)).view(b, t, QUERY_HEADS, HEAD_DIM)
        k = (value @ wk.reshape(m, -1) + bk.reshape(-1)).view(b, s, KV_HEADS, HEAD_DIM)
        v = (value @ wv.reshape(m, -1) + bv.reshape(-1)).view(b, s, KV_HEADS, HEAD_DIM)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=use_causal_mask, enable_gqa=True,
        )
        out = out.transpose(1, 2).reshape(b, t, QUERY_HEADS * HEAD_DIM)
        return out @ wo.reshape(-1, m) + bo


def run(shapes, rounds):
    """Rows of pygqa / floor per shape and mode: medians and paired ratios."""
    layer = impls.build_layers(("pygqa",))["pygqa"]
    floor = FloorAttention(impls.gqa_weights())
    rows = []
    for shape in shapes:
        x = backends.make_input(shape.batch, shape.length, D_MODEL)
        for mode in MODES:
            steps = {
                "pygqa": backends.make_step(layer, x, mode, shape.call_kwargs),
                "floor": backends.make_step(floor, x, mode, shape.call_kwargs),
            }
            outs = {n: backends.forward_outputs(st.run(), shape.call_kwargs, mode)[0]
                    for n, st in steps.items()}
            err = float(np.max(np.abs(outs["pygqa"] - outs["floor"])) /
                        np.max(np.abs(outs["floor"])))
            samples = timing.time_interleaved(steps, rounds, warmup=2)
            # Ratio pygqa / floor: the reference of paired_ratio is the denominator.
            rows.append(dict(
                shape=shape.label, mode=mode, rounds=len(samples["floor"]),
                pygqa_ms=statistics.median(samples["pygqa"]) * 1e3,
                floor_ms=statistics.median(samples["floor"]) * 1e3,
                ratio=timing.paired_ratio(samples, "pygqa", reference="floor"),
                spread=timing.ratio_spread(samples, "pygqa", reference="floor"),
                parity=err,
            ))
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row):
    low, high = row["spread"]
    return (f"| {row['shape']} | {row['mode']} | {row['rounds']} | {row['pygqa_ms']:.1f} | "
            f"{row['floor_ms']:.1f} | {row['ratio']:.3f} ({low:.2f}-{high:.2f}) | "
            f"{row['parity']:.1e} |")


def markdown(rows, rounds):
    import keras
    import torch

    cpu = machine.describe()
    load = os.getloadavg()[0]
    lines = [
        "# torch: pygqa against its floor",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, keras {keras.__version__}, "
        f"torch {torch.__version__}, up to {rounds} paired interleaved rounds, "
        f"load average at the end {load:.1f}.",
        "",
        f"Measured on: {machine.caption(cpu)}.",
        "",
        "Floor: the four projection products and one SDPA call as bare torch calls "
        "(bench/floor.py). `pygqa/floor`: median over rounds of the per-round ratio, "
        "smallest and largest round in brackets (1.05 = 5% above the floor). "
        "`parity`: largest |pygqa - floor| / largest |floor| of the output.",
        "",
        "| shape | mode | rounds | pygqa ms | floor ms | pygqa/floor | parity |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_line(row) for row in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=OUT, help="Markdown file to write ('-': print only)")
    args = parser.parse_args(argv)
    if backends.BACKEND != "torch":
        raise SystemExit(
            f"`python -m benchmarks.floor` measures the torch backend: expected "
            f"KERAS_BACKEND=torch. Received: KERAS_BACKEND={backends.BACKEND!r}"
        )
    shapes = parse_shapes(args.shapes)
    if any(shape.scores for shape in shapes):
        raise SystemExit("Received shape E for `--shapes`: the floor has no scores path.")
    rows = run(shapes, args.rounds)
    text = markdown(rows, args.rounds)
    if args.out != "-":
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
