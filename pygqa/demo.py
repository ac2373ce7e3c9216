"""The main job: one small model with the layer, in Python and in R, checked twice.

Run with `python -m pygqa.demo` (the README's first command does it for you).
It builds a model with pygqa's layer and
1. gives keras.layers.GroupQueryAttention the same weights and compares outputs;
2. builds the same model in R (an `Rscript` child process using the R package
   pygqa, with R numbers and R arrays), hands it the same weights and input,
   and compares R's output with Python's.
For each it prints both outputs' shapes and their largest difference.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HEAD_DIM, QUERY_HEADS, KV_HEADS = 8, 8, 2

# The same model as build_model(), written by an R user. Reads x.npy and
# w0.npy, w1.npy, ... (Python's weights, in Keras's order) from the folder given
# as its argument, writes R's prediction to y_r.npy.
R_SCRIPT = r"""
dir <- commandArgs(trailingOnly = TRUE)[[1]]
suppressPackageStartupMessages(library(pygqa))
np <- reticulate::import("numpy")
x <- np$load(file.path(dir, "x.npy"))               # an R array (batch, time, features)
files <- sort(list.files(dir, pattern = "^w[0-9]+[.]npy$"))
weights <- lapply(file.path(dir, files[order(as.integer(gsub("\\D", "", files)))]), np$load)
inputs <- keras$Input(shape = dim(x)[-1])
attended <- layer_group_query_attention(
  list(inputs, inputs, use_causal_mask = TRUE),
  head_dim = %(head_dim)d, num_query_heads = %(query_heads)d, num_key_value_heads = %(kv_heads)d
)
outputs <- keras$layers$Dense(dim(x)[3], name = "head")(attended)
model <- keras$Model(inputs, outputs)
model$set_weights(weights)
y <- model$predict(x, verbose = 0L)
np$save(file.path(dir, "y_r.npy"), np$asarray(y, dtype = "float32"))
cat("R", as.character(getRversion()), "pygqa", as.character(packageVersion("pygqa")),
    "backend", keras$backend$backend(), "\n")
""" % dict(head_dim=HEAD_DIM, query_heads=QUERY_HEADS, kv_heads=KV_HEADS)


def build_model(keras, layer, length=16, features=32):
    """Input -> grouped-query self-attention (causal) -> Dense."""
    inputs = keras.Input((length, features))
    attended = layer(inputs, inputs, use_causal_mask=True)
    outputs = keras.layers.Dense(features, name="head")(attended)
    return keras.Model(inputs, outputs)


def run_in_r(x, weights):
    """R's prediction for `x` from the same model with `weights`, or (None, reason)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, "Rscript not found (bash scripts/setup.sh installs R and the R package)"
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        np.save(folder / "x.npy", x)
        for i, w in enumerate(weights):
            np.save(folder / f"w{i}.npy", w)
        (folder / "model.R").write_text(R_SCRIPT)
        # The R package's Python is this Python, with this process's backend.
        env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
        result = subprocess.run([rscript, "--vanilla", str(folder / "model.R"), str(folder)],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            return None, "Rscript failed:\n" + result.stderr[-2000:]
        print(result.stdout.strip())
        return np.load(folder / "y_r.npy"), None


def main():
    import keras

    import pygqa

    rng = np.random.default_rng(2023)
    x = rng.normal(size=(4, 16, 32)).astype("float32")
    ours = build_model(keras, pygqa.GroupQueryAttention(head_dim=HEAD_DIM,
                                                        num_query_heads=QUERY_HEADS,
                                                        num_key_value_heads=KV_HEADS, seed=1))
    theirs = build_model(keras, keras.layers.GroupQueryAttention(HEAD_DIM, QUERY_HEADS, KV_HEADS))
    theirs.set_weights(ours.get_weights())
    out_ours = keras.ops.convert_to_numpy(ours.predict(x, verbose=0))
    out_theirs = keras.ops.convert_to_numpy(theirs.predict(x, verbose=0))
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    print(f"pygqa {pygqa.__version__}: {QUERY_HEADS} query heads share {KV_HEADS} key/value "
          f"heads (groups of {QUERY_HEADS // KV_HEADS})")
    print(f"pygqa output shape:                         {out_ours.shape}")
    print(f"keras.layers.GroupQueryAttention out shape: {out_theirs.shape}")
    print(f"largest difference: {np.abs(out_ours - out_theirs).max():.3g}")

    print("\nThe same model built in R (R package pygqa, via Rscript), same weights:")
    out_r, problem = run_in_r(x, ours.get_weights())
    if out_r is None:
        print(f"R comparison failed: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"Python output shape: {out_ours.shape}")
    print(f"R output shape:      {out_r.shape}")
    print(f"largest difference |R - Python|: {np.abs(out_r - out_ours).max():.3g}")


if __name__ == "__main__":
    main()
