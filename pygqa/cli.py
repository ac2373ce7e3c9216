"""The `pygqa` command line."""

import argparse
import os
import sys

_BENCH_EPILOG = """\
The backend is taken from KERAS_BACKEND (tensorflow, jax or torch); run once per backend,
e.g.  KERAS_BACKEND=jax pygqa bench. Shapes (d_model 512, head_dim 64, 8 query / 2 kv heads):
A 4x512, B 1x2048, C 1x4096, D 8x128, E = B with attention scores, F = B causal.
"""


def _parser():
    parser = argparse.ArgumentParser(prog="pygqa", description="pygqa tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench",
        help="time and measure pygqa against Keras's attention layers",
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--shapes", help="comma-separated named shapes (default: A,B,C,D,E,F)")
    bench.add_argument("--custom", metavar="B,T", help="add a shape of batch B and length T")
    bench.add_argument(
        "--out",
        metavar="DIR",
        help="results folder (default: benchmarks/results/<CPU kind>/<backend>[-<policy>])",
    )
    bench.add_argument(
        "--gate", action="store_true",
        help="the gated layers (use_gate=True), pygqa against Keras's GQA layer",
    )
    bench.add_argument(
        "--policy",
        default="float32",
        help="the layers' Keras dtype policy, e.g. mixed_bfloat16 (default: float32)",
    )
    bench.add_argument("--rounds", type=int, default=5, help="timed rounds per case (default: 5)")
    bench.add_argument(
        "--budget",
        type=float,
        default=30.0,
        metavar="S",
        help="fewer rounds (min 3) where one case would take longer than S seconds (default: 30)",
    )
    bench.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    bench.add_argument(
        "--scaling",
        metavar="LENGTHS",
        help="lengths of the pygqa memory-scaling series (default 1024,...,16384; 'none' skips it)",
    )
    bench.add_argument(
        "--memory-limit",
        type=float,
        default=8.0,
        metavar="GIB",
        help="stop a memory measurement past this RSS (default: 8)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="a ~1 minute smoke run (shapes D,A, 2 rounds)"
    )
    bench.add_argument(
        "--render", metavar="DIR", help="only rewrite DIR's table and plot from its results.json"
    )
    bench.add_argument(
        "--summary",
        metavar="ROOT",
        help="only write ROOT/summary.md, the ratios of every ROOT/<backend>/results.json",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument(
        "--stand-in",
        action="store_true",
        help="time keras's GQA layer in place of pygqa (to test the harness itself)",
    )
    return parser


def _bench(args):
    from pygqa.bench import shapes as shp
    from pygqa.bench.suite import run_suite

    if args.render:
        from pygqa.bench.report import render

        render(args.render)
        print(f"Rewritten: {args.render}/results.md, results.png")
        return 0
    if args.summary:
        from pygqa.bench.report import summary

        text = summary(args.summary)
        with open(os.path.join(args.summary, "summary.md"), "w") as f:
            f.write(text)
        print(text)
        return 0

    shapes = shp.parse_shapes(args.shapes) if args.shapes else []
    if args.quick and not shapes:
        shapes = [shp.SHAPES[n] for n in shp.QUICK_SHAPES]
    elif not shapes and args.shapes is None:
        shapes = list(shp.SHAPES.values())
    if args.custom:
        shapes.append(shp.parse_custom(args.custom))
    if not shapes:
        raise ValueError("No shapes to run: give `--shapes` or `--custom`.")
    scaling = None
    if args.scaling:
        scaling = () if args.scaling.lower() == "none" else shp.parse_lengths(args.scaling)
    if args.rounds < 1:
        raise ValueError(
            f"Received an invalid value for `--rounds`: expected >= 1. Received: {args.rounds}"
        )
    import keras

    from pygqa.bench import machine

    try:
        keras.DTypePolicy(args.policy)
    except ValueError as error:
        raise ValueError(f"Received an invalid value for `--policy`: {error}") from None
    run = keras.backend.backend() + ("" if args.policy == "float32" else f"-{args.policy}")
    run += "-gated" if args.gate else ""
    out = args.out or os.path.join("benchmarks", "results", machine.kind(), run)
    run_suite(
        shapes=shapes,
        rounds=args.rounds,
        budget_s=args.budget,
        memory_check=not args.no_memory,
        scaling_lengths=scaling,
        out=out,
        quick=args.quick,
        stand_in=args.stand_in,
        memory_limit_mib=args.memory_limit * 1024,
        progress=not args.no_progress,
        policy=args.policy,
        gate=args.gate,
    )
    with open(os.path.join(out, "results.md")) as f:
        print(f.read())
    print(f"Written: {out}/results.md, results.png, results.json")
    return 0


def main(argv=None):
    """Entry point of the `pygqa` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(args)
    except ValueError as err:
        print(f"pygqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
