"""The main job: a small grouped-query-attention model of place names, trained in Python and in R.

Run with `python -m pygqa.demo` (the README's `bash scripts/run.sh demo` does it for you).

The data are 117 US place names from R's `datasets` package (`pygqa.place_names`).
A character-level model (token and position embeddings, two blocks of causal
grouped-query self-attention with 8 query heads sharing 2 key/value heads, each
followed by a small feed-forward network, residuals and layer norms) learns to
spell them. The same model is trained twice from the same seed, side by side:
here with the Keras API, and in an `Rscript` child process with the R package
pygqa (R's own `set_random_seed()`, R's own copy of the names).

It prints both runs' losses and their largest difference, checks that the final
weights are equal, generates names with the layer's key/value cache in both
languages (the same text, and the same as recomputing every prefix), compares the
cache with a multi-head model of the same width, and plots both loss curves.
Exit status 1 when R and Python disagree (or R cannot run).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from pygqa.place_names import PLACE_NAMES

SEED = 2023
WIDTH, HEAD_DIM, QUERY_HEADS, KV_HEADS, BLOCKS = 64, 8, 8, 2, 2
DROPOUT = 0.1
EPOCHS, BATCH_SIZE, LEARNING_RATE = 60, 16, 3e-3
PAD, BOUNDARY = 0, 1  # token 0 pads (masked); token 1 starts and ends every name
PROMPTS = "abcdmnsw"  # generated names start with these letters
# R and Python run the same float32 Keras code on the same data from the same
# seed; they must agree within the 1e-6 (they agree exactly on
# TensorFlow and JAX; see the README's "Reproducible training").
TOLERANCE = 1e-6
DEFAULT_PLOT = pathlib.Path("docs") / "demo-losses-{backend}.png"


def vocabulary(names):
    """Characters in code-point order; token ids 2.. (0 pads, 1 is the boundary)."""
    chars = sorted(set("".join(names)))
    return {c: i + 2 for i, c in enumerate(chars)}


def encode(names, codes, length):
    """Inputs `[boundary, c1..cn, pad..]` and targets `[c1..cn, boundary, pad..]`, int32."""
    x = np.full((len(names), length), PAD, "int32")
    y = np.full((len(names), length), PAD, "int32")
    for row, name in enumerate(names):
        ids = [codes[c] for c in name]
        x[row, : len(ids) + 1] = [BOUNDARY] + ids
        y[row, : len(ids) + 1] = ids + [BOUNDARY]
    return x, y


def build_model(keras, pygqa, vocab_size, length):
    """The model R's script builds too, layer for layer, in the same order."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    positions = keras.Input((None,), dtype="int32", name="positions")
    token_vectors = keras.layers.Embedding(vocab_size, WIDTH, mask_zero=True,
                                           name="token_embedding")(tokens)
    position_vectors = keras.layers.Embedding(length, WIDTH, name="position_embedding")(positions)
    x = keras.layers.Add(name="embed")([token_vectors, position_vectors])
    for block in range(1, BLOCKS + 1):
        attention = pygqa.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, KV_HEADS, dropout=DROPOUT,
                                              name=f"attention_{block}")
        attended = attention(x, use_causal_mask=True)
        x = keras.layers.LayerNormalization(name=f"norm_{block}a")(
            keras.layers.Add()([x, attended]))
        hidden = keras.layers.Dense(2 * WIDTH, activation="relu", name=f"ffn_{block}_in")(x)
        hidden = keras.layers.Dense(WIDTH, name=f"ffn_{block}_out")(hidden)
        x = keras.layers.LayerNormalization(name=f"norm_{block}b")(
            keras.layers.Add()([x, hidden]))
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    model = keras.Model([tokens, positions], logits)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def next_tokens_cached(keras, model, starts, length):
    """Greedy decoding, one position per step, with each attention layer's key/value cache."""
    ops = keras.ops
    layer = model.get_layer
    batch = len(starts)
    caches = [layer(f"attention_{b}").empty_cache(batch, length) for b in range(1, BLOCKS + 1)]
    current = np.full((batch, 1), BOUNDARY, "int32")
    generated = [[] for _ in range(batch)]
    for i in range(length - 1):
        x = layer("embed")([layer("token_embedding")(current),
                            layer("position_embedding")(np.full((batch, 1), i, "int32"))])
        for b in range(1, BLOCKS + 1):
            attended, caches[b - 1] = layer(f"attention_{b}")(
                x, cache=caches[b - 1], cache_update_index=i, use_causal_mask=True)
            x = layer(f"norm_{b}a")(ops.add(x, attended))
            hidden = layer(f"ffn_{b}_out")(layer(f"ffn_{b}_in")(x))
            x = layer(f"norm_{b}b")(ops.add(x, hidden))
        predicted = np.argmax(ops.convert_to_numpy(layer("logits")(x))[:, 0], axis=-1)
        current = (starts[:, None] if i == 0 else predicted[:, None]).astype("int32")
        for row in range(batch):
            generated[row].append(int(current[row, 0]))
    return generated, caches


def greedy_consistent(keras, model, starts, generated):
    """Whether one call of the whole model on the generated names predicts each of their
    tokens from the ones before (what recomputing every prefix without a cache gives)."""
    sequences = np.concatenate([np.full((len(starts), 1), BOUNDARY, "int32"),
                                np.array(generated, "int32")], axis=1)
    positions = np.broadcast_to(np.arange(sequences.shape[1], dtype="int32"), sequences.shape)
    logits = keras.ops.convert_to_numpy(model([sequences, positions], training=False))
    predicted = np.argmax(logits, axis=-1)
    for row, ids in enumerate(generated):
        end = ids.index(BOUNDARY) + 1 if BOUNDARY in ids else len(ids)
        # Position 0 saw only the boundary (the prompt letter was given, not predicted).
        if not np.array_equal(predicted[row, 1:end], np.array(ids[1:end])):
            return False
    return True


def as_text(generated, codes):
    chars = {i: c for c, i in codes.items()}
    texts = []
    for ids in generated:
        end = ids.index(BOUNDARY) if BOUNDARY in ids else len(ids)
        texts.append("".join(chars.get(i, "?") for i in ids[:end]))
    return texts


class Progress:
    """One line with a bar per run: redrawn in place on a terminal, every quarter otherwise."""

    def __init__(self, total, stream=sys.stdout):
        self.total, self.stream = total, stream
        self.done = {"Python": 0, "R": 0}
        self.lock = threading.Lock()
        self.tty = stream.isatty()
        self.quarters = -1

    def advance(self, run, steps=1):
        with self.lock:
            self.done[run] = min(self.total, self.done[run] + steps)
            quarter = min(self.done.values()) * 4 // self.total
            if self.tty:
                self.stream.write("\r" + self.line())
            elif quarter > self.quarters:
                self.quarters = quarter
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self):
        def bar(n):
            filled = 24 * n // self.total
            return "[" + "#" * filled + "." * (24 - filled) + f"] {n:4d}/{self.total}"

        return f"  Python {bar(self.done['Python'])}   R {bar(self.done['R'])}"

    def close(self):
        if self.tty:
            self.stream.write("\n")


def r_demo_script(rscript):
    """The R half of the demo: the R package's demo/place-names.R, as installed.

    The same data (read from R's own datasets), the same model built with the R
    package's functions, the same seed, the same decoding with the layer's cache.
    """
    found = subprocess.run(
        [rscript, "--vanilla", "-e",
         'cat(system.file("demo", "place-names.R", package = "pygqa"))'],
        capture_output=True, text=True, check=False).stdout.strip()
    if not found:
        raise RuntimeError("the R package pygqa (with its demo/place-names.R) is not installed "
                           "in R's library: run `bash scripts/setup.sh`")
    return found


def start_r(folder, config, progress, seed):
    """Starts the R run in the background; returns a function that waits and returns its output."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise RuntimeError("Rscript not found: run `bash scripts/setup.sh` (it installs R and the "
                           "R package pygqa), or put Rscript on PATH")
    (folder / "config.json").write_text(json.dumps(dict(config, seed=seed)))
    script = r_demo_script(rscript)
    # The R package's Python is this Python, with this process's backend.
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    stderr = open(folder / "stderr.txt", "w")
    child = subprocess.Popen([rscript, "--vanilla", script, str(folder)],
                             stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    lines = []

    def read():
        for line in child.stdout:
            if line.startswith("step "):
                progress.advance("R")
            else:
                lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait():
        code = child.wait()
        reader.join()
        stderr.close()
        if code != 0:
            tail = (folder / "stderr.txt").read_text()[-3000:]
            raise RuntimeError(f"Rscript exited with status {code}:\n{tail}")
        return lines

    return wait


def read_r_results(folder):
    weights = sorted(folder.glob("w[0-9][0-9][0-9].npy"))
    return dict(
        names=(folder / "names.txt").read_text().splitlines(),
        samples=(folder / "samples.txt").read_text().splitlines(),
        losses=np.load(folder / "losses.npy"),
        epoch_losses=np.load(folder / "epoch_losses.npy"),
        weights=[np.load(w) for w in weights],
    )


def plot(path, python_losses, r_losses, backend, steps_per_epoch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(python_losses) + 1)
    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    axes.plot(epochs, python_losses, lw=3, color="#4c72b0", alpha=0.6, label="Python (Keras API)")
    axes.plot(epochs, r_losses, lw=1.2, ls="--", color="#dd5555", label="R (pygqa package)")
    axes.set_xlabel(f"epoch ({steps_per_epoch} shuffled batches each)")
    axes.set_ylabel("training loss (cross-entropy)")
    axes.set_title(f"Place names, GQA {QUERY_HEADS} query / {KV_HEADS} key-value heads, {backend}")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})  # same losses, same bytes
    plt.close(figure)


def largest_difference(a, b):
    if len(a) != len(b):
        return float("inf")
    return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                for x, y in zip(a, b)), default=0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pygqa.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    parser.add_argument("--plot", type=pathlib.Path, default=None,
                        help=f"where the PNG goes (default {DEFAULT_PLOT})")
    parser.add_argument("--r-seed", type=int, default=SEED,
                        help="seed of the R run (another value shows a disagreement)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import keras

    import pygqa

    backend = keras.backend.backend()
    if backend == "torch":
        # Two runs share two cores: one thread each. Torch's OpenMP threads spin
        # while they wait, and two of them per run on a busy machine are 5-20x slower.
        import torch

        torch.set_num_threads(1)
    names = list(PLACE_NAMES)
    codes = vocabulary(names)
    length = max(map(len, names)) + 1
    x, y = encode(names, codes, length)
    positions = np.broadcast_to(np.arange(length, dtype="int32"), x.shape).copy()
    steps_per_epoch = -(-len(names) // BATCH_SIZE)
    total_steps = args.epochs * steps_per_epoch
    print(f"pygqa {pygqa.__version__}, keras {keras.__version__}, backend {backend}")
    print(f"data: {len(names)} US place names from R's datasets (state.name, names(precip)), "
          f"{len(codes)} characters, up to {length} positions")
    print(f"model: {BLOCKS} blocks of grouped-query attention, {QUERY_HEADS} query heads sharing "
          f"{KV_HEADS} key/value heads of size {HEAD_DIM} (width {WIDTH}), dropout {DROPOUT}; "
          f"{args.epochs} epochs x {steps_per_epoch} shuffled batches, seed {SEED}")
    print("training in Python and in R (Rscript) side by side:")

    progress = Progress(total_steps)
    config = dict(backend=backend, length=length, width=WIDTH, head_dim=HEAD_DIM,
                  query_heads=QUERY_HEADS, kv_heads=KV_HEADS, blocks=BLOCKS, dropout=DROPOUT,
                  epochs=args.epochs, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                  prompts=PROMPTS)
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        try:
            wait_for_r = start_r(folder, config, progress, args.r_seed)
        except (RuntimeError, OSError) as error:
            print(f"\nR run failed: {error}", file=sys.stderr)
            return 1

        keras.utils.set_random_seed(SEED)
        model = build_model(keras, pygqa, len(codes) + 2, length)
        losses = []

        def on_step(batch, logs):
            losses.append(float(logs["loss"]))
            progress.advance("Python")

        keras.utils.set_random_seed(SEED)  # fit()'s shuffle order (TensorFlow seeds it here)
        history = model.fit([x, positions], y, batch_size=BATCH_SIZE, epochs=args.epochs,
                            shuffle=True, verbose=0,
                            callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=on_step)])
        python_seconds = time.perf_counter() - started
        try:
            r_lines = wait_for_r()
        except RuntimeError as error:
            progress.close()
            print(f"\nR run failed: {error}", file=sys.stderr)
            return 1
        progress.close()
        from_r = read_r_results(folder)
    training_seconds = time.perf_counter() - started
    for line in r_lines:
        print(f"  {line}")

    epoch_losses = np.array(history.history["loss"])
    print("\nloss per epoch (mean over the epoch's steps):")
    print("  epoch    Python         R              |R - Python|")
    shown = sorted({0, *range(4, args.epochs, 5), args.epochs - 1})
    for e in shown:
        if e < len(from_r["epoch_losses"]):
            p, r = epoch_losses[e], from_r["epoch_losses"][e]
            print(f"  {e + 1:5d}    {p:.9f}    {r:.9f}    {abs(r - p):.3g}")

    checks = []

    def check(ok, text):
        checks.append(ok)
        print(f"  [{'ok' if ok else 'FAILED'}] {text}")

    print("\nR == Python:")
    check(from_r["names"] == names, "the same data (R's datasets give the names Python ships)")
    loss_diff = largest_difference(losses, from_r["losses"])
    check(loss_diff <= TOLERANCE, f"losses at all {len(losses)} steps: largest difference "
          f"{loss_diff:.3g}" + (" (exactly equal)" if loss_diff == 0 else ""))
    weights = model.get_weights()
    weight_diff = largest_difference(weights, from_r["weights"])
    check(weight_diff <= TOLERANCE, f"final weights ({len(weights)} arrays, "
          f"{sum(w.size for w in weights)} numbers): largest difference {weight_diff:.3g}"
          + (" (exactly equal)" if weight_diff == 0 else ""))

    starts = np.array([codes[c] for c in PROMPTS], "int32")
    generated, caches = next_tokens_cached(keras, model, starts, length)
    samples = as_text(generated, codes)
    check(samples == from_r["samples"], "names generated with the key/value cache: the same text")
    check(greedy_consistent(keras, model, starts, generated),
          "the cache gives the text that recomputing every prefix gives")
    known = set(names)
    print("\nnames generated (greedy, with the key/value cache), Python | R:")
    for ours, theirs in zip(samples, from_r["samples"]):
        note = "(in the data)" if ours in known else "(new)"
        print(f"  {ours:<22} | {theirs:<22} {note}")

    multi_head = pygqa.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, QUERY_HEADS)
    mha_cache = multi_head.empty_cache(1, length)
    one_gqa = caches[0][:1]
    gqa_bytes = BLOCKS * int(np.prod(one_gqa.shape)) * 4
    mha_bytes = BLOCKS * int(np.prod(mha_cache.shape)) * 4
    print(f"\nkey/value cache for one name of {length} positions, {BLOCKS} blocks, float32:")
    print(f"  grouped ({QUERY_HEADS} query / {KV_HEADS} key-value heads): {BLOCKS} x "
          f"{tuple(one_gqa.shape)} = {gqa_bytes / 1024:.1f} KiB")
    print(f"  multi-head, same width ({QUERY_HEADS} / {QUERY_HEADS} heads):   {BLOCKS} x "
          f"{tuple(mha_cache.shape)} = {mha_bytes / 1024:.1f} KiB "
          f"({mha_bytes // gqa_bytes}x larger)")

    path = args.plot or pathlib.Path(str(DEFAULT_PLOT).format(backend=backend))
    plot(path, epoch_losses, from_r["epoch_losses"], backend, steps_per_epoch)
    print(f"\nplot of both loss curves: {path}")
    print(f"time: {time.perf_counter() - started:.0f} s (training side by side "
          f"{training_seconds:.0f} s, Python's run alone {python_seconds:.0f} s)")
    if not all(checks):
        print("R and Python disagree (see FAILED above)", file=sys.stderr)
        return 1
    print("R and Python agree.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
