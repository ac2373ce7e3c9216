#!/usr/bin/env bash
# Runs every test, assuming scripts/setup.sh has run: the Python suite once per
# Keras backend, TensorFlow's numerics-sensitive tests again with oneDNN in the
# other state than the first run's, the cross-backend checks, the R
# package's tests and R CMD check, and the documentation sites. Missing backends,
# R, rpy2, pkgdown or chromium make tests fail here, never skip. Prints the CPU
# first and each step's time last.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYGQA_REQUIRE_BACKENDS=tensorflow,jax,torch
export PYGQA_REQUIRE_R=1 PYGQA_REQUIRE_PYTHON=1 PYGQA_REQUIRE_KERAS_HUB=1 PYGQA_REQUIRE_DOCS=1
export RETICULATE_PYTHON="$PWD/.venv/bin/python"
BACKENDS=${PYGQA_BACKENDS:-tensorflow jax torch}
# Two pytest workers: most of a test's time is tracing and compiling, on one core.
WORKERS=${PYGQA_TEST_WORKERS:-2}
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider -n "$WORKERS" --dist loadfile)
# One JAX compilation cache for every process of this run (both workers, the
# subprocesses, R's children): a program compiled once is read back, not
# compiled again (7% of the JAX step's time, measured on 377 of its tests).
JAX_COMPILATION_CACHE_DIR=$(mktemp -d)
trap 'rm -rf "$JAX_COMPILATION_CACHE_DIR" "${logs:-}"' EXIT
export JAX_COMPILATION_CACHE_DIR JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

# The CPU and TensorFlow's oneDNN state, which change rounding and op names.
# The main TensorFlow run keeps the state it finds (the CPU's default unless
# TF_ENABLE_ONEDNN_OPTS is set); a second run takes the other one. One Python
# prints both lines and, last, the other state's TF_ENABLE_ONEDNN_OPTS value.
machine_lines=$(KERAS_BACKEND=tensorflow .venv/bin/python -c '
import os
from pygqa.bench import machine
described = machine.describe()
state = described["libraries"]["tf_onednn"]
other = 0 if state == "on" else 1
switch = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
print("CPU:", machine.caption(described))
print(f"TensorFlow oneDNN: {state} (" + (f"TF_ENABLE_ONEDNN_OPTS={switch}" if switch is not None
      else "TF_ENABLE_ONEDNN_OPTS unset: the default") + "); second run with "
      f"TF_ENABLE_ONEDNN_OPTS={other}")
print(other)
' 2>/dev/null) || { echo "cannot read the CPU and TensorFlow's oneDNN state" >&2; machine_lines=0; }
onednn_other=${machine_lines##*$'\n'}
[ "$machine_lines" = "$onednn_other" ] || printf '%s\n' "${machine_lines%$'\n'*}"

failed=()
timings=()
step() {
  local name=$1; shift
  local start=$SECONDS
  printf '\n=== %s ===\n' "$name"
  if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failed+=("$name"); fi
  timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
}

# Steps that run in the background, each into its own log; finish_background_steps
# waits for them and prints their logs, results and times in the order started.
logs=$(mktemp -d)
background=()
background_step() {
  local name=$1; shift
  local log="$logs/${#background[@]}"
  ( start=$SECONDS; "$@"; status=$?; echo $((SECONDS - start)) >"$log.seconds"; exit $status ) \
    >"$log" 2>&1 &
  background+=("$!:$log:$name")
}
finish_background_steps() {
  local entry pid log name status
  for entry in "${background[@]}"; do
    pid=${entry%%:*}; log=${entry#*:}; log=${log%%:*}; name=${entry#*:*:}
    wait "$pid"; status=$?
    printf '\n=== %s (in the background) ===\n' "$name"
    cat "$log"
    if [ "$status" = 0 ]; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failed+=("$name"); fi
    timings+=("$(printf '%5d s  %s (in the background)' "$(cat "$log.seconds" 2>/dev/null || echo 0)" "$name")")
  done
  background=()
}

step "ruff (lint)" .venv/bin/python -m ruff check pygqa tests benchmarks
# The documentation's examples (README, guides, the cross-language guides)
# are backend-neutral code: they run on the first backend only (the default,
# tensorflow, unless PYGQA_BACKENDS says otherwise), where the docs step builds
# the sites too. What they show per backend (parity, training, saving, R
# against Python) is tested on every backend by the other files.
DOCS_BACKEND=${BACKENDS%% *}
DOCS_EXAMPLES=(tests/test_readme.py tests/cross_language/test_xlang_vignette.py)
for backend in $BACKENDS; do
  ignored=(--ignore=tests/multi_backend --ignore=tests/test_docs.py)
  if [ "$backend" != "$DOCS_BACKEND" ]; then
    ignored+=("${DOCS_EXAMPLES[@]/#/--ignore=}")
  fi
  step "pytest ($backend)" env KERAS_BACKEND="$backend" "${PYTEST[@]}" tests "${ignored[@]}"
done
if [[ " $BACKENDS " == *" tensorflow "* ]]; then
  # What oneDNN's rounding and kernel choice can change: the kernels and their
  # paths, the parity with Keras, keras-hub and the float64 reference, the
  # user paths (compiled against eager, XLA, export), with oneDNN's kernels
  # swapped for Eigen's or the other way round. (R and Python run the same
  # TensorFlow in one process, so the cross-language tests compare like with
  # like in either state; they run in the main step.)
  step "pytest (tensorflow, TF_ENABLE_ONEDNN_OPTS=$onednn_other)" \
    env KERAS_BACKEND=tensorflow TF_ENABLE_ONEDNN_OPTS="$onednn_other" "${PYTEST[@]}" \
    tests/test_kernel_paths.py tests/test_band_kernel.py \
    tests/test_gradients.py tests/test_parity.py tests/test_properties.py \
    tests/test_precision.py tests/test_user_paths.py tests/test_window_gate.py \
    tests/test_rotary.py tests/test_keras_hub.py
fi
step "pytest (all backends together)" "${PYTEST[@]}" tests/multi_backend
# The R package's two steps side by side (each mostly one R process on one
# core): testthat with Python, and R CMD check, which builds the package and
# its vignettes, runs the examples with Python and the tests without it (the
# testthat step runs them with Python). Beside them, the documentation sites
# (built once, on TensorFlow: its examples cost half of JAX's CPU time).
background_step "R testthat" bash r-wrapper/tools/test.sh
background_step "R CMD check" env PYGQA_CHECK_TESTS_WITH_PYTHON=0 bash r-wrapper/tools/check.sh
background_step "docs (both sites)" env KERAS_BACKEND=tensorflow \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_docs.py
finish_background_steps

printf '\nTime per step:\n'
printf '%s\n' "${timings[@]}"
printf '%5d s  in all\n' "$SECONDS"
if [ ${#failed[@]} -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nAll test steps passed.\n'
