#!/usr/bin/env bash
# Runs the R package's testthat tests against the installed package.
#   r-wrapper/tools/test.sh            install into a temporary library, then test
#   PYGQA_REQUIRE_PYTHON=1 ...         a missing Python side fails instead of skipping
# Python: RETICULATE_PYTHON if set, else the repository's .venv. The backend of
# this run is KERAS_BACKEND (default tensorflow); test-backends.R covers the
# other backends in child processes. Exit status: non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)

if [ -z "${RETICULATE_PYTHON:-}" ] && [ -x "$repo/.venv/bin/python" ]; then
  export RETICULATE_PYTHON="$repo/.venv/bin/python"
fi
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
export NOT_CRAN="${NOT_CRAN:-true}"  # run the slower subprocess tests too
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

lib=$(mktemp -d)
trap 'rm -rf "$lib"' EXIT
R CMD INSTALL --no-multiarch --library="$lib" "$here" >"$lib/install.log" 2>&1 ||
  { cat "$lib/install.log" >&2; exit 1; }
export R_LIBS="$lib${R_LIBS:+:$R_LIBS}"

Rscript --vanilla - "$here/tests/testthat" <<'RSCRIPT'
dir <- commandArgs(trailingOnly = TRUE)[[1]]
cat(sprintf("R package pygqa %s, Python %s, KERAS_BACKEND=%s, PYGQA_REQUIRE_PYTHON=%s\n",
            utils::packageVersion("pygqa"), Sys.getenv("RETICULATE_PYTHON", "(reticulate's choice)"),
            Sys.getenv("KERAS_BACKEND"), Sys.getenv("PYGQA_REQUIRE_PYTHON", "0")))
results <- testthat::test_dir(dir, package = "pygqa", load_package = "installed",
                              reporter = "summary", stop_on_failure = FALSE)
df <- as.data.frame(results)
counts <- c(expectations = sum(df$nb), failed = sum(df$failed), errors = sum(df$error),
            skipped = sum(df$skipped), warnings = sum(df$warning))
cat(sprintf("testthat: %d tests, %d expectations, %d failed, %d errors, %d skipped, %d warnings\n",
            nrow(df), counts[["expectations"]], counts[["failed"]], counts[["errors"]],
            counts[["skipped"]], counts[["warnings"]]))
quit(status = if (counts[["failed"]] + counts[["errors"]] > 0) 1L else 0L)
RSCRIPT
