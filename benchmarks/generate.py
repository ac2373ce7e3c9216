"""Text generation with keras-hub: the same `CausalLM`, keras-hub's attention against
pygqa's (`pygqa.keras_hub.swap_attention`), timed side by side in one process.

    KERAS_BACKEND=jax python -m benchmarks.generate [--batches 1,4] [--prompt 1024]
                                                    [--new 64] [--rounds 3]

The model is a Llama architecture at a small size (below), random weights, float32,
greedy sampling; each `generate()` call gets `prompt` tokens and writes `new` more.
keras-hub compiles `generate()` its own way on each backend (`jax.jit`, `tf.function`,
eager torch under `no_grad`); both models run it the same way. `prefill` is the same
call writing one token: the prompt's pass through the model plus one step. Time: median
over interleaved rounds; speed-up = median of per-round keras-hub/pygqa ratios (> 1:
pygqa faster), with the smallest and largest round. Memory: peak RSS above baseline of
one `generate()` call after a compiling call, each in a fresh process.
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

from pygqa.bench import backends, machine, timing

MIB = 2**20
RESULTS = os.path.join("benchmarks", "results", machine.kind())
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Llama's layout at a size two CPU cores run in seconds: 8 query heads share 2 key/value
# heads of 64 features (as the attention benchmarks), a gated MLP, tied embeddings off.
MODEL = dict(vocabulary_size=1024, num_layers=2, num_query_heads=8, num_key_value_heads=2,
             hidden_dim=512, intermediate_dim=1408)
IMPLS = ("keras_hub", "pygqa")


def build(impl, seed=1):
    """A compiled greedy `LlamaCausalLM`; with `impl="pygqa"` its attention swapped."""
    import keras_hub

    from pygqa.keras_hub import swap_attention

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(**MODEL)
    lm = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    if impl == "pygqa":
        swap_attention(lm)
    lm.compile(sampler="greedy")
    return lm


def prompts(batch, prompt, new, seed=0):
    """`batch` prompts of `prompt` random tokens in `prompt + new` slots."""
    rng = np.random.default_rng(seed)
    total = prompt + new
    padding = np.zeros((batch, total), bool)
    padding[:, :prompt] = True
    tokens = np.where(padding, rng.integers(1, MODEL["vocabulary_size"], (batch, total)), 0)
    return {"token_ids": tokens.astype("int32"), "padding_mask": padding}


def generate_step(lm, inputs):
    return backends.Step(lambda: lm.generate(dict(inputs), stop_token_ids=None)["token_ids"])


def run(batches, prompt, new, rounds, memory=True):
    """Times generate() and prefill for both implementations at each batch size
    (and, with `memory`, measures their peaks in fresh processes)."""
    models = {impl: build(impl) for impl in IMPLS}
    record = {"backend": keras.backend.backend(), "keras": keras.__version__,
              "machine": machine.describe(), "date": str(datetime.date.today()),
              "prompt": prompt, "new": new, "model": MODEL,
              "load_start": round(os.getloadavg()[0], 1), "rows": []}
    for batch in batches:
        for phase, written in (("generate", new), ("prefill", 1)):
            inputs = prompts(batch, prompt, written)
            steps = {impl: generate_step(lm, inputs) for impl, lm in models.items()}
            outputs = {impl: np.asarray(step.run()) for impl, step in steps.items()}
            samples = timing.time_interleaved(steps, rounds, warmup=1)
            low, high = timing.ratio_spread(samples, "keras_hub")
            row = {"batch": batch, "phase": phase, "rounds": len(samples["pygqa"]),
                   "speedup": timing.paired_ratio(samples, "keras_hub"),
                   "speedup_min": low, "speedup_max": high,
                   "same_tokens": bool(np.array_equal(outputs["pygqa"],
                                                      outputs["keras_hub"]))}
            for impl in IMPLS:
                seconds = statistics.median(samples[impl])
                row[f"{impl}_s"] = seconds
                row[f"{impl}_tokens_per_s"] = batch * written / seconds
            record["rows"].append(row)
            print(json.dumps(row), flush=True)
    del models
    gc.collect()
    for row in record["rows"]:
        if memory and row["phase"] == "generate":
            for impl in IMPLS:
                row[f"{impl}_mib"] = peak_in_subprocess(impl, row["batch"], prompt, new)
    record["load_end"] = round(os.getloadavg()[0], 1)
    return record


def peak_in_subprocess(impl, batch, prompt, new, timeout_s=900):
    """Peak RSS (MiB) above baseline of one generate() call in a fresh process."""
    spec = json.dumps({"impl": impl, "batch": batch, "prompt": prompt, "new": new})
    result = subprocess.run([sys.executable, "-m", "benchmarks.generate", "--worker", spec],
                            capture_output=True, text=True, cwd=REPOSITORY, timeout=timeout_s)
    if result.returncode != 0:
        print(f"memory worker failed ({impl}, batch {batch}): {result.stderr.strip()[-300:]}",
              file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def _worker(spec):
    from pygqa.bench.memory_worker import peak_of_run

    lm = build(spec["impl"])
    step = generate_step(lm, prompts(spec["batch"], spec["prompt"], spec["new"]))
    step.run()  # compiles: the compiler's memory is not the call's
    peak, baseline = peak_of_run(step)
    print(json.dumps({"peak_mib": (peak - baseline) / MIB}))


def markdown(records):
    """generate.md from {backend: record}, one table for every backend."""
    first = next(iter(records.values()))
    model = first["model"]
    lines = [
        "# Generation: keras-hub's Llama with its own attention and with pygqa's",
        "",
        f"`LlamaCausalLM`, {model['num_layers']} layers, hidden {model['hidden_dim']}, "
        f"{model['num_query_heads']} query / {model['num_key_value_heads']} key-value heads of "
        f"{model['hidden_dim'] // model['num_query_heads']}, MLP {model['intermediate_dim']}, "
        f"vocabulary {model['vocabulary_size']}, float32, greedy; prompt {first['prompt']} "
        f"tokens, {first['new']} new (`python -m benchmarks.generate`). `prefill`: the same "
        "call writing 1 token. Time: median s over interleaved rounds; speed-up: median "
        "of per-round keras-hub/pygqa times (smallest-largest round), > 1: pygqa faster. "
        "Memory: peak RSS above baseline of one `generate()`, each in a fresh process. "
        "`same tokens`: both wrote the same tokens.",
        "",
        "| backend | batch | phase | rounds | keras-hub s | pygqa s | speed-up (min-max) "
        "| pygqa tokens/s | keras-hub MiB | pygqa MiB | same tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mib(value):
        return "–" if value is None else f"{value:.0f}"

    for record in records.values():
        backend = record["backend"]
        for r in record["rows"]:
            lines.append(
                f"| {backend} | {r['batch']} | {r['phase']} | {r['rounds']} | "
                f"{r['keras_hub_s']:.2f} | {r['pygqa_s']:.2f} | {r['speedup']:.2f}x "
                f"({r['speedup_min']:.2f}-{r['speedup_max']:.2f}) | "
                f"{r['pygqa_tokens_per_s']:.0f} | {mib(r.get('keras_hub_mib'))} | "
                f"{mib(r.get('pygqa_mib'))} | {'yes' if r['same_tokens'] else 'NO'} |")
    lines += ["", "| backend | machine | keras | date | load avg (1 min) start / end |",
              "|---|---|---|---|---|"]
    for r in records.values():
        lines.append(f"| {r['backend']} | {machine.caption(r['machine'])} | {r['keras']} | "
                     f"{r['date']} | {r['load_start']} / {r['load_end']} |")
    return "\n".join(lines) + "\n"


def _integers(text):
    return [int(n) for n in text.split(",")]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=_integers, default=[1, 4])
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=RESULTS, help="folder of generate.md / generate.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return 0
    start = time.monotonic()
    record = run(args.batches, args.prompt, args.new, args.rounds)
    path = os.path.join(args.out, "generate.json")
    records = {}
    if os.path.exists(path):
        with open(path) as f:
            records = json.load(f)
    # One table per backend and CPU: another machine's rows stay beside this one's.
    cpu = record["machine"].get("cpu", {})
    extensions = " ".join(cpu.get("extensions") or [])
    records[f"{record['backend']} on {cpu.get('model')} ({extensions})"] = record
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(args.out, "generate.md"), "w") as f:
        f.write(markdown(records))
    print(markdown(records))
    print(f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
