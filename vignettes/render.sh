#!/usr/bin/env bash
# Renders the cross-language guide (R and Python chunks, run by knitr and
# reticulate in one process) to HTML.
#   bash vignettes/render.sh [output-dir]     default output dir: vignettes/_build
# Python: RETICULATE_PYTHON, else the repository's .venv; backend: KERAS_BACKEND
# (default tensorflow). Prints the path of the HTML file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/vignettes/_build}" && cd "${1:-$root/vignettes/_build}" && pwd)
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$root/.venv/bin/python}"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
Rscript --vanilla -e "rmarkdown::render('$root/vignettes/cross-language.Rmd',
  output_dir = '$out', intermediates_dir = '$work', knit_root_dir = '$work', quiet = TRUE)"
echo "$out/cross-language.html"
