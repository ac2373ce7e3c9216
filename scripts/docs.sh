#!/usr/bin/env bash
# Builds the two documentation sites, assuming scripts/setup.sh has run:
#   docs/_site/python  Sphinx (docs/python/): the API reference from the docstrings, the guides
#   docs/_site/r       pkgdown (r-wrapper/_pkgdown.yml): the reference from the roxygen docs,
#                      the R guide and the cross-language guides (vignettes/) as articles
#   bash scripts/docs.sh [python|r]   (default: both)
# Fails on any Sphinx warning, on an R example or article chunk that errors, and on
# an R topic missing from _pkgdown.yml. Python: .venv; backend: KERAS_BACKEND.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
site=$root/docs/_site
what=${1:-both}
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export RETICULATE_PYTHON=${RETICULATE_PYTHON:-$root/.venv/bin/python}
# Four virtual CPU devices for beyond-keras.Rmd's multi-device part (JAX only), as
# vignettes/render.sh does.
export XLA_FLAGS=${XLA_FLAGS:---xla_force_host_platform_device_count=4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python_site() {
  rm -rf "$site/python"
  .venv/bin/python -m sphinx -W --keep-going -q -E -b html -d "$work/doctrees" \
    docs/python "$site/python"
  echo "docs: $site/python/index.html"
}

r_site() {
  Rscript -e 'quit(status = !requireNamespace("pkgdown", quietly = TRUE))' >/dev/null 2>&1 || {
    echo "docs: the R package pkgdown is not installed (bash scripts/setup.sh installs" \
      "Debian's r-cran-pkgdown)" >&2
    return 1
  }
  # pkgdown reads articles from the package's vignettes/; the cross-language
  # guides are the repository's, so the site is built from a copy.
  local pkg=$work/pygqa
  cp -R r-wrapper "$pkg"
  rm -rf "$pkg"/*.Rcheck
  mkdir -p "$pkg/vignettes/articles" "$pkg/pkgdown/templates" "$work/lib"
  cp vignettes/cross-language.Rmd vignettes/beyond-keras.Rmd "$pkg/vignettes/articles/"
  # Debian's pkgdown points every page at file:///usr/share/javascript/mathjax:
  # a path on the building machine. No page has maths, so that script goes.
  grep -v 'file:///usr/share/javascript/mathjax' \
    "$(Rscript -e 'cat(system.file("BS5/templates/head.html", package = "pkgdown"))')" \
    >"$pkg/pkgdown/templates/head.html"
  # The examples and articles run against this checkout's R package.
  R CMD INSTALL --no-multiarch --library="$work/lib" r-wrapper >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; return 1; }
  rm -rf "$site/r"
  # pkgdown's progress (a line per page) goes to a log, shown when the build fails.
  R_LIBS="$work/lib${R_LIBS:+:$R_LIBS}" Rscript --vanilla - "$pkg" "$site/r" \
    >"$work/pkgdown.log" 2>&1 <<'RSCRIPT' || { tail -n 40 "$work/pkgdown.log" >&2; return 1; }
args <- commandArgs(trailingOnly = TRUE)
# @examplesIf pygqa_available() would skip every example without Python.
if (!pygqa::pygqa_available()) {
  stop("docs: the Python side of pygqa is not available (RETICULATE_PYTHON=",
       Sys.getenv("RETICULATE_PYTHON"), "); run bash scripts/setup.sh", call. = FALSE)
}
options(pkgdown.internet = FALSE)  # no CRAN look-up for the sidebar
pkgdown::build_site(args[[1]], override = list(destination = args[[2]]), install = FALSE,
                    new_process = FALSE, preview = FALSE)
# pkgdown prints an example's error into the page and carries on: fail here.
pages <- list.files(file.path(args[[2]], "reference"), "[.]html$", full.names = TRUE)
failed <- Filter(function(page) any(grepl("r-err", readLines(page, warn = FALSE),
                                          fixed = TRUE)), pages)
if (length(failed) > 0) {
  stop("docs: an example errors on ", paste(basename(failed), collapse = ", "), call. = FALSE)
}
RSCRIPT
  echo "docs: $site/r/index.html"
}

case "$what" in
  python) python_site ;;
  r) r_site ;;
  both) python_site; r_site ;;
  *) echo "usage: bash scripts/docs.sh [python|r]" >&2; exit 2 ;;
esac
