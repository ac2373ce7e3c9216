"""GPU benchmark: pygqa vs keras.layers.GroupQueryAttention vs the raw fused kernel.

Run through `benchmarks/gpu.sh`, which starts one process per backend:

    python benchmarks/gpu.py --backend jax --out DIR [--cpu]    # DIR/jax.json
    python benchmarks/gpu.py --report DIR                       # DIR/gpu.md

Self-contained on purpose: it imports keras, the backend and pygqa, nothing
else (the CPU suite in this package needs tqdm, the GPU machine may not have
it). Four implementations per case, bfloat16 (`mixed_bfloat16` for the layers):

- `pygqa`: `pygqa.GroupQueryAttention`;
- `keras`: `keras.layers.GroupQueryAttention` with the same weights;
- `raw`: the four projections as einsums plus the fused kernel, a layer with
  nothing around it (the floor a layer can reach);
- `kernel`: the fused kernel alone on projected heads (jax:
  `jax.nn.dot_product_attention(implementation="cudnn")`; torch: SDPA with
  `enable_gqa=True`, cuDNN first when a mask is given).

FLOPs are counted as FlashAttention's benchmark counts them: attention
forward 4 * B * u * T * S * h, half of it when causal, backward 2.5x forward;
with padding only kept keys count. Projections: 2 * B * T * m * (2 u + 2 k) * h
forward, 3x that for forward+backward. Layer TFLOP/s = (projections +
attention) / time; attention TFLOP/s = attention / time, for the kernel alone.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

# Full size (issue 14): d_model 4096, head_dim 128, 32 query / 8 key-value heads.
FULL = dict(d_model=4096, head_dim=128, heads=32, kv_heads=8,
            shapes=((4, 4096), (1, 16384)), padded=(4, 4096))
# The --cpu dry run: one tiny shape, causal and not, and the padded case (each
# case compiles 8 functions on jax, ~1 s apiece on 2 CPU cores).
TINY = dict(d_model=64, head_dim=16, heads=4, kv_heads=2, shapes=((2, 64),), padded=(2, 64))
IMPLS = ("pygqa", "keras", "raw", "kernel")
MODES = ("fwd", "fwdbwd")
MODE_LABELS = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}
# bfloat16 output agreement with Keras's layer, relative to the output's scale.
PARITY_TOLERANCE = 3e-2


def cases(config):
    """(batch, length, causal, padded) for every case of a config."""
    out = [(b, t, causal, False) for b, t in config["shapes"] for causal in (False, True)]
    out.append((*config["padded"], False, True))
    return out


def kept_lengths(batch, length):
    """Key lengths of the padded case: the full length, then 3/4, 1/2, 1/4, ..."""
    return [max(1, length - i * length // 4) for i in range(batch)]


def attention_flops(batch, length, causal, padded, heads, head_dim, mode):
    pairs = sum(length * k for k in kept_lengths(batch, length)) if padded else batch * length**2
    forward = 4 * heads * head_dim * pairs / (2 if causal else 1)
    return forward if mode == "fwd" else 3.5 * forward


def layer_flops(batch, length, causal, padded, config, mode):
    m, h, u, k = config["d_model"], config["head_dim"], config["heads"], config["kv_heads"]
    projections = 2 * batch * length * m * (2 * u + 2 * k) * h
    projections = projections if mode == "fwd" else 3 * projections
    return projections + attention_flops(batch, length, causal, padded, u, h, mode)


# --- timing ----------------------------------------------------------------------


def time_call(run, sync, min_time=0.3, max_reps=20, warmup=2):
    # The dry run (--cpu) passes min_time=0.01, warmup=1: it checks the harness.
    """Median seconds of `run()` after `warmup` calls (each followed by `sync`)."""
    for _ in range(warmup):
        sync(run())
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        begin = time.perf_counter()
        sync(run())
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


# --- JAX -------------------------------------------------------------------------


class JaxRunner:
    def __init__(self, cpu):
        import jax

        self.jax, self.jnp = jax, jax.numpy
        self.on_gpu = jax.default_backend() == "gpu"
        if not cpu and not self.on_gpu:
            raise SystemExit("jax sees no GPU (jax.default_backend() != 'gpu'); use --cpu")
        self.implementation = "cudnn" if self.on_gpu else "xla"
        self.device = str(jax.devices()[0].device_kind)

    def sync(self, result):
        return self.jax.block_until_ready(result)

    def array(self, x, dtype="bfloat16"):
        return self.jnp.asarray(x, dtype=dtype)

    def layer_step(self, layer, x, call_kwargs, mode):
        jax, jnp = self.jax, self.jnp
        trainable = [v.value for v in layer.trainable_variables]
        fixed = [v.value for v in layer.non_trainable_variables]

        def forward(trainable, x):
            out, _ = layer.stateless_call(trainable, fixed, x, x, **call_kwargs)
            return out

        if mode == "fwd":
            return self._compile(forward, trainable, x)
        loss = lambda w, x: jnp.sum(forward(w, x).astype("float32"))  # noqa: E731
        return self._compile(jax.grad(loss, argnums=(0, 1)), trainable, x)

    def raw_step(self, weights, x, causal, lengths, mode, kernel_only=False, heads=None):
        jax, jnp = self.jax, self.jnp
        seq = None if lengths is None else jnp.asarray(lengths, "int32")

        def attend(q, k, v):
            return jax.nn.dot_product_attention(
                q, k, v, is_causal=causal, key_value_seq_lengths=seq,
                implementation=self.implementation)

        if kernel_only:
            q, k, v = heads

            def forward(q, k, v):
                return attend(q, k, v)

            args = (q, k, v)
            if mode == "fwdbwd":
                loss = lambda *a: jnp.sum(forward(*a).astype("float32"))  # noqa: E731
                return self._compile(jax.grad(loss, argnums=(0, 1, 2)), *args)
            return self._compile(forward, *args)

        def forward(weights, x):
            wq, bq, wk, bk, wv, bv, wo, bo = (w.astype("bfloat16") for w in weights)
            q = jnp.einsum("btm,muh->btuh", x, wq) + bq
            k = jnp.einsum("bsm,mkh->bskh", x, wk) + bk
            v = jnp.einsum("bsm,mkh->bskh", x, wv) + bv
            return jnp.einsum("btuh,uhm->btm", attend(q, k, v), wo) + bo

        if mode == "fwdbwd":
            loss = lambda w, x: jnp.sum(forward(w, x).astype("float32"))  # noqa: E731
            return self._compile(jax.grad(loss, argnums=(0, 1)), weights, x)
        return self._compile(forward, weights, x)

    def _compile(self, function, *args):
        compiled = self.jax.jit(function).lower(*args).compile()
        memory = None
        analysis = compiled.memory_analysis()
        if analysis is not None:  # working memory of the call: temporaries and outputs
            memory = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
        return (lambda: compiled(*args)), (lambda: memory)

    def output(self, result):
        import numpy as np

        return np.asarray(result, dtype="float32")


# --- torch -----------------------------------------------------------------------


class TorchRunner:
    def __init__(self, cpu):
        import torch

        self.torch = torch
        self.on_gpu = torch.cuda.is_available()
        if not cpu and not self.on_gpu:
            raise SystemExit("torch sees no GPU (torch.cuda.is_available() is False); use --cpu")
        self.dev = "cuda" if self.on_gpu else "cpu"
        self.device = torch.cuda.get_device_name() if self.on_gpu else "cpu"

    def sync(self, result):
        if self.on_gpu:
            self.torch.cuda.synchronize()
        return result

    def array(self, x, dtype="bfloat16"):
        return self.torch.as_tensor(x).to(self.dev, getattr(self.torch, dtype))

    def _measured(self, run):
        """(run, peak): peak is the allocated memory above the baseline of one call."""
        torch = self.torch

        def peak():
            if not self.on_gpu:
                return None
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            run()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base

        return run, peak

    def layer_step(self, layer, x, call_kwargs, mode):
        torch = self.torch
        if mode == "fwd":

            def run():
                with torch.no_grad():
                    return layer(x, x, **call_kwargs)

            return self._measured(run)
        params = [w.value for w in layer.trainable_weights]
        x = x.detach().clone().requires_grad_(True)

        def run():
            for p in (x, *params):
                p.grad = None
            out = layer(x, x, **call_kwargs)
            out.float().sum().backward()
            return out

        return self._measured(run)

    def raw_step(self, weights, x, causal, lengths, mode, kernel_only=False, heads=None):
        torch = self.torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        mask = None
        if lengths is not None:  # (b, 1, 1, s): key padding
            positions = torch.arange(x.shape[1], device=self.dev)
            mask = positions[None, :] < torch.as_tensor(lengths, device=self.dev)[:, None]
            mask = mask[:, None, None, :]
        backends = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                    SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

        def attend(q, k, v):  # (b, t, u, h), (b, s, k, h) -> (b, t, u, h)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            if mask is None:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            else:
                with sdpa_kernel(backends, set_priority=True):
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                         enable_gqa=True)
            return out.transpose(1, 2)

        if kernel_only:
            inputs = [t.detach().clone().requires_grad_(mode == "fwdbwd") for t in heads]

            def run():
                if mode == "fwd":
                    with torch.no_grad():
                        return attend(*inputs)
                for t in inputs:
                    t.grad = None
                out = attend(*inputs)
                out.float().sum().backward()
                return out

            return self._measured(run)

        params = [w.detach().clone().requires_grad_(mode == "fwdbwd") for w in weights]
        x = x.detach().clone().requires_grad_(mode == "fwdbwd")

        def forward():
            wq, bq, wk, bk, wv, bv, wo, bo = (w.to(torch.bfloat16) for w in params)
            q = torch.einsum("btm,muh->btuh", x, wq) + bq
            k = torch.einsum("bsm,mkh->bskh", x, wk) + bk
            v = torch.einsum("bsm,mkh->bskh", x, wv) + bv
            return torch.einsum("btuh,uhm->btm", attend(q, k, v), wo) + bo

        def run():
            if mode == "fwd":
                with torch.no_grad():
                    return forward()
            for p in (x, *params):
                p.grad = None
            out = forward()
            out.float().sum().backward()
            return out

        return self._measured(run)

    def output(self, result):
        return result.detach().float().cpu().numpy()


# --- one backend's run -------------------------------------------------------------


def run_backend(backend, cpu, budget_s):
    """Times every case on `backend`; returns {"meta": ..., "rows": [...]}."""
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    import pygqa

    if keras.backend.backend() != backend:
        raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()!r}, expected {backend!r}")
    runner = {"jax": JaxRunner, "torch": TorchRunner}[backend](cpu)
    config = TINY if cpu else FULL
    m, h, u, k = config["d_model"], config["head_dim"], config["heads"], config["kv_heads"]
    rng = np.random.default_rng(0)
    ours = pygqa.GroupQueryAttention(h, u, k, dtype="mixed_bfloat16")
    theirs = keras.layers.GroupQueryAttention(h, u, k, dtype="mixed_bfloat16")
    ours.build((None, None, m), (None, None, m))
    theirs.build((None, None, m), (None, None, m))
    weights = [rng.normal(0, _init_scale(w.shape, h), w.shape).astype("float32")
               for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    raw_weights = [runner.array(w, "float32") for w in weights]

    deadline = time.monotonic() + budget_s
    rows = []
    for batch, length, causal, padded in cases(config):
        x_np = rng.standard_normal((batch, length, m), dtype=np.float32)
        x = runner.array(x_np)
        lengths = kept_lengths(batch, length) if padded else None
        call_kwargs = {"use_causal_mask": causal}
        if padded:
            value_mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
            call_kwargs["value_mask"] = runner.array(value_mask, "bool")
        heads = [runner.array(rng.standard_normal((batch, length, n, h), dtype=np.float32))
                 for n in (u, k, k)]
        outputs = {}
        for mode in MODES:
            for impl in IMPLS:
                row = dict(batch=batch, length=length, causal=causal, padded=padded,
                           mode=mode, impl=impl)
                rows.append(row)
                if time.monotonic() > deadline:
                    row["status"] = "skipped (time budget)"
                    continue
                try:
                    if impl in ("pygqa", "keras"):
                        layer = ours if impl == "pygqa" else theirs
                        run, peak = runner.layer_step(layer, x, call_kwargs, mode)
                    else:
                        run, peak = runner.raw_step(raw_weights, x, causal, lengths, mode,
                                                    kernel_only=impl == "kernel", heads=heads)
                    result = runner.sync(run())
                    if mode == "fwd" and impl != "kernel":
                        outputs[impl] = runner.output(result)
                    timing = dict(min_time=0.01, warmup=1) if cpu else {}
                    row["ms"] = 1e3 * time_call(run, runner.sync, **timing)
                    row["peak_bytes"] = peak()
                    row["status"] = "ok"
                except Exception as error:  # noqa: BLE001 - one failed case must not end the run
                    row["status"] = f"failed: {type(error).__name__}: {str(error)[:120]}"
                    continue
                flops = layer_flops(batch, length, causal, padded, config, mode)
                attention = attention_flops(batch, length, causal, padded, u, h, mode)
                if impl == "kernel":
                    row["attention_tflops"] = attention / (row["ms"] * 1e-3) / 1e12
                else:
                    row["layer_tflops"] = flops / (row["ms"] * 1e-3) / 1e12
        reference = outputs.get("keras")
        for row in rows[-len(MODES) * len(IMPLS):]:
            mine = outputs.get(row["impl"])
            if reference is not None and mine is not None:
                scale = float(np.abs(reference).max())
                row["diff_vs_keras"] = float(np.abs(mine - reference).max()) / scale
        print(json.dumps(rows[-1]), flush=True)
    meta = dict(backend=backend, device=runner.device, on_gpu=runner.on_gpu,
                keras=keras.__version__, pygqa=pygqa.__version__, python=platform.python_version(),
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), config={
                    key: config[key] for key in ("d_model", "head_dim", "heads", "kv_heads")},
                backend_version=_backend_version(backend))
    return {"meta": meta, "rows": rows}


def _init_scale(shape, head_dim):
    """Kernels: variance 1 / fan-in (unit-scale outputs); biases: 0.1."""
    if len(shape) < 3:
        return 0.1
    fan_in = shape[0] if shape[-1] == head_dim else shape[0] * shape[1]  # (m,u,h) / (u,h,m)
    return fan_in**-0.5


def _backend_version(backend):
    module = __import__(backend)
    return getattr(module, "__version__", "?")


# --- the report --------------------------------------------------------------------


def _case_label(row):
    label = f"{row['batch']} x {row['length']}"
    if row["causal"]:
        label += " causal"
    if row["padded"]:
        label += " padded"
    return label


def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def markdown(runs):
    """The Markdown report of {backend: run} (run = run_backend's result)."""
    lines = ["# GPU benchmark: pygqa vs keras.layers.GroupQueryAttention vs the fused kernel", ""]
    for backend, run in runs.items():
        meta, rows = run["meta"], run["rows"]
        c = meta["config"]
        lines += [
            f"## {backend}",
            "",
            f"{meta['device']}{'' if meta['on_gpu'] else ' (CPU dry run, tiny shapes)'}; "
            f"{backend} {meta['backend_version']}, keras {meta['keras']}, pygqa "
            f"{meta['pygqa']}, Python {meta['python']}, {meta['date']}. bfloat16 "
            f"(`mixed_bfloat16` layers), self-attention, d_model {c['d_model']}, head_dim "
            f"{c['head_dim']}, {c['heads']} query / {c['kv_heads']} key-value heads.",
            "",
            "| case | mode | impl | ms | keras / this | layer TFLOP/s | attention TFLOP/s "
            "| peak MiB | max diff vs keras |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        keras_ms = {(_case_label(r), r["mode"]): r.get("ms") for r in rows if r["impl"] == "keras"}
        for row in rows:
            key = (_case_label(row), row["mode"])
            ms = row.get("ms")
            ratio = keras_ms.get(key) / ms if ms and keras_ms.get(key) else None
            if row["status"] != "ok":
                cells = [row["status"]] + ["–"] * 5
            else:
                peak = row.get("peak_bytes")
                cells = [_fmt(ms, ".2f"), _fmt(ratio, ".2f") + ("x" if ratio else ""),
                         _fmt(row.get("layer_tflops"), ".3g"),
                         _fmt(row.get("attention_tflops"), ".3g"),
                         _fmt(None if peak is None else peak / 2**20, ".0f"),
                         _fmt(row.get("diff_vs_keras"), ".1e")]
                if (row.get("diff_vs_keras") or 0) > PARITY_TOLERANCE:
                    cells[-1] += " ✗"
            lines.append("| " + " | ".join(
                [key[0], MODE_LABELS[row["mode"]], row["impl"], *cells]) + " |")
        lines += ["", *_targets(rows), ""]
    lines += [
        "Layer TFLOP/s: (projections + attention) FLOPs / time; attention TFLOP/s: the "
        "kernel alone. Attention FLOPs as FlashAttention counts them (4·B·u·T·S·h forward, "
        "half when causal, backward 2.5x forward; padded: kept keys only); projections "
        "2·B·T·m·(2u+2k)·h forward, 3x for forward+backward. `raw`: the four projections as "
        "einsums around the fused kernel. Peak MiB: jax, XLA's temporaries and outputs of the "
        "compiled call; torch, allocated memory above the baseline during one call (– on CPU).",
        "",
    ]
    return "\n".join(lines)


def _targets(rows):
    """Issue 14's targets, read off the forward+backward rows."""
    by = {(_case_label(r), r["mode"], r["impl"]): r.get("ms") for r in rows}
    labels = sorted({_case_label(r) for r in rows}, key=lambda s: [_case_label(r) for r in rows
                                                                  ].index(s))
    speedups, gaps = [], []
    for label in labels:
        mine, keras_ms, raw = (by.get((label, "fwdbwd", i)) for i in ("pygqa", "keras", "raw"))
        if mine and keras_ms:
            speedups.append(f"{label} {keras_ms / mine:.2f}x")
        if mine and raw:
            gaps.append(f"{label} {mine / raw:.2f}")
    causal_long = [r for r in rows if r["impl"] == "pygqa" and r["mode"] == "fwdbwd"
                   and r["causal"] and r["batch"] == 1 and r.get("layer_tflops")]
    return [
        "Targets (forward+backward):",
        "",
        "- keras / pygqa time, >= 1.2x at every case: " + (", ".join(speedups) or "–"),
        "- pygqa / raw time, <= 1.10: " + (", ".join(gaps) or "–"),
        "- pygqa layer TFLOP/s at 1 x 16384 causal, >= 350: "
        + (", ".join(f"{r['layer_tflops']:.3g}" for r in causal_long) or "–"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("jax", "torch"))
    parser.add_argument("--out", help="folder for <backend>.json (with --backend) or gpu.md")
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU at tiny shapes")
    parser.add_argument("--budget", type=float, default=200.0,
                        help="seconds after which remaining cases are skipped (default 200)")
    parser.add_argument("--report", metavar="DIR", help="write DIR/gpu.md from DIR/*.json")
    args = parser.parse_args(argv)
    if args.report:
        runs = {}
        for backend in ("jax", "torch"):
            path = os.path.join(args.report, f"{backend}.json")
            if os.path.exists(path):
                with open(path) as f:
                    runs[backend] = json.load(f)
        if not runs:
            raise SystemExit(f"no jax.json or torch.json in {args.report!r}")
        with open(os.path.join(args.report, "gpu.md"), "w") as f:
            f.write(markdown(runs))
        return 0
    if args.backend is None or args.out is None:
        parser.error("--backend and --out are required unless --report is given")
    result = run_backend(args.backend, args.cpu, args.budget)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.backend}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
