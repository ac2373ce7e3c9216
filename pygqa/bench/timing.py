"""Wall-clock timing: interleaved rounds, paired ratios, GEMM throughput, call overhead."""

import statistics
import time

from pygqa.bench import backends


def time_interleaved(steps, rounds, warmup=1, min_sample_s=0.05, budget_s=None, min_rounds=3):
    """Time several `Step`s on the same problem, interleaved: A B C, B C A, C A B, ...

    After compiling and `warmup` untimed runs of each step, every round runs each
    step once (a sample averages `inner` back-to-back runs, so that tiny shapes are
    not dominated by timer resolution), rotating the order so that no step always
    follows the same one. Interleaving makes slow drifts (other processes, thermal)
    hit all steps alike, and lets ratios be taken per round.

    With `budget_s`, the number of rounds is cut (to no fewer than `min_rounds`)
    where `rounds` rounds would take longer than that, so that long shapes do not
    dominate the run time.

    Returns {name: [seconds per run, one per round]}.
    """
    names = list(steps)
    last = {}
    for name in names:
        steps[name].prepare()
        for _ in range(warmup):
            start = time.perf_counter()
            steps[name].run()
            last[name] = time.perf_counter() - start
    inner = max(1, round(min_sample_s / max(min(last.values()), 1e-6)))
    if budget_s is not None:
        per_round = inner * sum(last.values())
        rounds = max(min(rounds, min_rounds), min(rounds, int(budget_s / per_round)))
    samples = {name: [] for name in names}
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            run = steps[name].run
            start = time.perf_counter()
            for _ in range(inner):
                run()
            samples[name].append((time.perf_counter() - start) / inner)
    return samples


def paired_ratio(samples, other, reference="pygqa"):
    """Median over rounds of other_time / reference_time (> 1: reference is faster)."""
    return statistics.median(_ratios(samples, other, reference))


def ratio_spread(samples, other, reference="pygqa"):
    """(smallest, largest) per-round ratio other_time / reference_time: how far
    single rounds strayed from the median (the spread a table shows)."""
    ratios = _ratios(samples, other, reference)
    return min(ratios), max(ratios)


def _ratios(samples, other, reference):
    return [o / r for o, r in zip(samples[other], samples[reference], strict=True)]


def gemm_gflops(n=2048, reps=10, dtype="float32"):
    """Best GFLOP/s of an n x n matmul in `dtype` on this backend (the roofline used for
    the efficiency column). The best, not the median, run: it is the machine's
    capability, and the least disturbed by other processes."""
    matmul = backends.matmul_fn(n, dtype)
    matmul()  # compile / warm caches
    best = min(_timed(matmul) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def call_overhead(layer=None, inputs=None, reps=200, warmup=10, **call_kwargs):
    """Median seconds per eager call `layer(*inputs, **call_kwargs)` at a tiny shape.

    This is the per-call cost that a wrapper (e.g. R through reticulate) adds to: time
    the same layer and inputs from the other language and subtract. Defaults: a
    pygqa layer with head_dim 8, 4 query / 2 key-value heads, on a (1, 8, 16) input
    used as query and value.
    """
    import keras

    if layer is None:
        import pygqa

        layer = pygqa.GroupQueryAttention(8, 4, 2)
    if inputs is None:
        x = keras.ops.ones((1, 8, 16))
        inputs = (x, x)
    for _ in range(warmup):
        backends.block(layer(*inputs, **call_kwargs))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        backends.block(layer(*inputs, **call_kwargs))
        times.append(time.perf_counter() - start)
    return statistics.median(times)
