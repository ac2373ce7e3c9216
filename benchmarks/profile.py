"""TensorFlow: where the blockwise kernel's time goes, op by op.

`python -m benchmarks.profile [--shapes A,B,C] [--products auto|query|key]
[--parallel N]` runs the kernel's forward+backward (the layer's attention on
projected heads, float32) in a TensorFlow graph with full tracing, sums the
time of every op by what it computes, and prints one table per shape:

- logits-sized products: Q K^T forward and dO V^T backward, (q x s) results;
- output-sized products: P V forward and dS K backward, (q x h) results;
- key-sized products: the key and value gradients, (s x h) or (h x s)
  (when a block has as many stacked rows as there are keys, these and the
  output-sized ones have the same shape and are counted together);
- softmax and its backward: elementwise work and reductions on logits;
- layout and loop: transposes, pads, the loop's reads and writes, the rest.

Tracing slows every op, so the shares are the numbers to read; the untraced
wall time of the same graph is printed beside them. `--products query
--parallel 1` is the kernel as it ran on TensorFlow before the key-major
products (the "before" of benchmarks/README.md).
"""

import argparse
import collections
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import statistics
import time

import numpy as np

from pygqa.bench.shapes import HEAD_DIM, KV_HEADS, QUERY_HEADS, parse_shapes

ROLES = ("logits-sized products", "output-sized products", "key-sized products",
         "softmax and its backward", "layout and loop")

# What an op computes, from its type with the kernel library's decoration taken
# off: with oneDNN on, TensorFlow runs `_MklBatchMatMulV2`, `_MklNativeBatchMatMulV2`,
# `_MklFusedBatchMatMulV2` or `_MklEinsum` where Eigen runs `BatchMatMulV2` and
# `Einsum`, and the same holds for softmax and the elementwise ops.
_DECORATION = re.compile(r"^_(Mkl)?(Native)?(Fused)?|^Fused")
_PRODUCTS = {"BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "MatMul", "Einsum"}
_SOFTMAX_PARTS = {"Max", "Sum", "Softmax", "Exp", "Sub", "Mul", "Reciprocal", "AddV2",
                  "SelectV2", "Select"}


def computation(op):
    """An op type without its kernel library's prefix: "_MklBatchMatMulV2" -> "BatchMatMulV2"."""
    return _DECORATION.sub("", op)


def _same_sizes(last_two, sizes):
    """Whether a result's last two axes are `sizes` in either order."""
    return tuple(last_two) in (tuple(sizes), tuple(sizes)[::-1])


def _role(op, shape, sizes):
    """Which of ROLES an op belongs to, from what it computes and the shape of its output."""
    dims = tuple(shape)
    logits = sizes["logits"]
    kind = computation(op)
    if kind in _PRODUCTS and len(dims) >= 2:
        if _same_sizes(dims[-2:], logits):
            return ROLES[0]
        if _same_sizes(dims[-2:], sizes["key"]) and logits[0] != logits[1]:
            return ROLES[2]
        return ROLES[1]
    if kind in _SOFTMAX_PARTS and len(dims) >= 2:
        # The logits themselves, or a reduction of them over either axis (the
        # softmax runs over the last axis query-major and over the one before
        # it key-major).
        if any(_same_sizes(dims[-2:], candidate) for candidate in
               (logits, (logits[0], 1), (1, logits[1]))):
            return ROLES[3]
    return ROLES[4]


def profile_shape(shape, products="auto", parallel=None, reps=3):
    """{role: traced ms}, traced total, untraced wall ms, rows per block, for one shape."""
    import tensorflow as tf

    from pygqa.kernels import blockwise, tf_blockwise

    causal = shape.causal
    b, t = shape.batch, shape.length
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((b, t, heads, HEAD_DIM)).astype("float32")
              for heads in (QUERY_HEADS, KV_HEADS, KV_HEADS)]
    chosen, max_rows = tf_blockwise.choose_products(t, QUERY_HEADS // KV_HEADS)
    if products == "key":
        chosen = tf_blockwise.KEY_MAJOR
        max_rows = tf_blockwise.key_major_rows(QUERY_HEADS // KV_HEADS)
    elif products == "query":
        chosen, max_rows = blockwise.QUERY_MAJOR, None
    plan = blockwise.plan_blocks(b, t, t, QUERY_HEADS, causal,
                                 tf_blockwise._BLOCK_ELEMENTS, max_rows)
    rows = plan.rows * QUERY_HEADS // KV_HEADS
    sizes = {"logits": (rows, t), "key": (t, HEAD_DIM)}
    saved = tf_blockwise._PARALLEL_ITERATIONS
    if parallel is not None:
        tf_blockwise._PARALLEL_ITERATIONS = parallel
    graph = tf.Graph()
    try:
        with graph.as_default():
            # Fed, not constants: Grappler would fold a loop-free graph of constants away.
            q, k, v = (tf.compat.v1.placeholder(tf.float32, x.shape) for x in arrays)
            feed = dict(zip((q, k, v), arrays))

            @tf.custom_gradient
            def attend(q, k, v):
                layout = blockwise.Layout(q, k, v, None, causal, plan, tf_blockwise._scan,
                                          chosen)
                out, kept = blockwise.forward(layout, keep=True)
                return layout.from_blocks(out), lambda g: blockwise.backward(layout, out, g, kept)

            out = attend(q, k, v)
            grads = tf.gradients(tf.reduce_sum(out * out), [q, k, v])
    finally:
        tf_blockwise._PARALLEL_ITERATIONS = saved
    with tf.compat.v1.Session(graph=graph) as session:
        for _ in range(2):
            session.run(grads, feed)
        walls = []
        for _ in range(reps):
            start = time.perf_counter()
            session.run(grads, feed)
            walls.append(time.perf_counter() - start)
        totals = collections.Counter()
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(reps):
            metadata = tf.compat.v1.RunMetadata()
            session.run(grads, feed, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    label = node.timeline_label
                    op = label.split("=")[-1].split("(")[0].strip() if "=" in label else ""
                    dims = ([d.size for d in node.output[0].tensor_description.shape.dim]
                            if node.output else [])
                    totals[_role(op, dims, sizes)] += node.all_end_rel_micros / 1e3 / reps
    return {
        "shape": shape.label, "products": chosen.__class__.__name__,
        "rows": plan.rows, "parallel": parallel or saved, "rows_equal_keys": rows == t,
        "roles": {role: totals[role] for role in ROLES},
        "traced_ms": sum(totals.values()), "wall_ms": statistics.median(walls) * 1e3,
    }


def markdown(result):
    roles = dict(result["roles"])
    if result["rows_equal_keys"]:  # see the module docstring
        roles[ROLES[1] + " and key-sized ones"] = roles.pop(ROLES[1]) + roles.pop(ROLES[2])
    lines = [
        f"{result['shape']}: {result['products']}, {result['rows']} rows per block, "
        f"{result['parallel']} in flight; untraced fwd+bwd {result['wall_ms']:.0f} ms",
        "",
        "| part | traced ms | share |",
        "|---|---|---|",
    ]
    for role, ms in roles.items():
        lines.append(f"| {role} | {ms:.0f} | {ms / result['traced_ms']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="A,B,C")
    parser.add_argument("--products", choices=("auto", "query", "key"), default="auto")
    parser.add_argument("--parallel", type=int, help="blocks in flight (default: the kernel's)")
    args = parser.parse_args(argv)
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        raise SystemExit("`python -m benchmarks.profile` profiles TensorFlow's kernel: expected "
                         f"KERAS_BACKEND=tensorflow. Received: {os.environ['KERAS_BACKEND']!r}")
    for shape in parse_shapes(args.shapes):
        print(markdown(profile_shape(shape, args.products, args.parallel)), flush=True)


if __name__ == "__main__":
    main()
