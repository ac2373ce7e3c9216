#!/usr/bin/env bash
# Runs every test, assuming scripts/setup.sh has run: the Python suite once per
# Keras backend, the cross-backend checks, the R package's tests and R CMD check.
# Missing backends, R or rpy2 make tests fail here, never skip.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYGQA_REQUIRE_BACKENDS=tensorflow,jax,torch
export PYGQA_REQUIRE_R=1 PYGQA_REQUIRE_PYTHON=1
export RETICULATE_PYTHON="$PWD/.venv/bin/python"
BACKENDS=${PYGQA_BACKENDS:-tensorflow jax torch}

failed=()
step() {
  local name=$1; shift
  printf '\n=== %s ===\n' "$name"
  if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failed+=("$name"); fi
}

step "ruff (lint)" .venv/bin/python -m ruff check pygqa tests benchmarks
for backend in $BACKENDS; do
  step "pytest ($backend)" env KERAS_BACKEND="$backend" \
    .venv/bin/python -m pytest tests --ignore=tests/multi_backend -q -p no:cacheprovider
done
step "pytest (all backends together)" .venv/bin/python -m pytest tests/multi_backend -q \
  -p no:cacheprovider
step "R testthat" bash r-wrapper/tools/test.sh
step "R CMD check" bash r-wrapper/tools/check.sh

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nAll test steps passed.\n'
