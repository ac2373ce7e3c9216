#!/usr/bin/env bash
# Renders the cross-language guides (R and Python chunks, run by knitr and
# reticulate in one process) to HTML.
#   bash vignettes/render.sh [output-dir] [name ...]   default: vignettes/_build, every guide
# Python: RETICULATE_PYTHON, else the repository's .venv; backend: KERAS_BACKEND
# (default tensorflow). Prints the path of the HTML file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/vignettes/_build}" && cd "${1:-$root/vignettes/_build}" && pwd)
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$root/.venv/bin/python}"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Four virtual CPU devices for the multi-device section (JAX only; others ignore it).
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=4}"
shift $(( $# > 0 ? 1 : 0 ))
names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=(cross-language beyond-keras); fi
for name in "${names[@]}"; do
  work=$(mktemp -d)
  Rscript --vanilla -e "rmarkdown::render('$root/vignettes/$name.Rmd',
    output_dir = '$out', intermediates_dir = '$work', knit_root_dir = '$work', quiet = TRUE)"
  rm -rf "$work"
  echo "$out/$name.html"
done
