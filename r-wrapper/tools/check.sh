#!/usr/bin/env bash
# R CMD build + R CMD check --no-manual of r-wrapper/, in a temporary directory.
#   r-wrapper/tools/check.sh [with-python|without-python|both]   (default: both)
# with-python:    RETICULATE_PYTHON (or the repository's .venv), PYGQA_REQUIRE_PYTHON=1,
#                 so tests that need Python fail rather than skip.
# without-python: a fresh, empty virtualenv as RETICULATE_PYTHON: the package, its
#                 examples, tests and vignettes must still pass.
# First checks that NAMESPACE and man/ match the roxygen comments (skipped when
# roxygen2 is missing). Prints each run's status lines; exits non-zero on an
# ERROR or a WARNING, or stale documentation.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
# The Python for building (vignettes) and the with-python check.
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$repo/.venv/bin/python}"
mode="${1:-both}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
export NOT_CRAN="${NOT_CRAN:-true}"  # run the slower subprocess tests too
status=0

# Documentation staleness: regenerate into a copy and compare.
if Rscript -e 'quit(status = !requireNamespace("roxygen2", quietly = TRUE))' >/dev/null 2>&1; then
  cp -R "$here" "$work/doc"
  rm -rf "$work/doc/man" "$work/doc/NAMESPACE"
  Rscript -e "suppressMessages(roxygen2::roxygenise('$work/doc'))" >"$work/roxygen.log" 2>&1 ||
    { cat "$work/roxygen.log" >&2; exit 1; }
  if diff -r -q "$here/man" "$work/doc/man" >/dev/null && diff -q "$here/NAMESPACE" "$work/doc/NAMESPACE" >/dev/null; then
    echo "roxygen: NAMESPACE and man/ are up to date"
  else
    echo "roxygen: NAMESPACE or man/ is stale; run Rscript -e 'roxygen2::roxygenise(\"r-wrapper\")'" >&2
    status=1
  fi
else
  echo "roxygen: roxygen2 not installed, staleness check skipped"
fi

(cd "$work" && R CMD build "$here" >build.log 2>&1) || { cat "$work/build.log" >&2; exit 1; }
tarball=$(ls "$work"/pygqa_*.tar.gz)
echo "built $(basename "$tarball")"

run_check() {  # $1: label, then options of R CMD check; the environment is set by the caller
  local label=$1; shift
  local dir="$work/$label"
  mkdir -p "$dir"
  # --no-build-vignettes: R CMD build has just rendered every vignette with Python,
  # and the check still runs their R code once; rebuilding them would be a third run.
  (cd "$dir" && R CMD check --no-manual --no-build-vignettes "$@" "$tarball" >check.out 2>&1) ||
    true
  local log="$dir/pygqa.Rcheck/00check.log"
  echo "== R CMD check ($label${*:+ $*}, RETICULATE_PYTHON=${RETICULATE_PYTHON:-unset})"
  if [ ! -f "$log" ]; then cat "$dir/check.out"; status=1; return; fi
  grep -E '\.\.\. (ERROR|WARNING|NOTE)' -A 8 "$log" || true
  local testlog
  for testlog in "$dir"/pygqa.Rcheck/tests/testthat.Rout*; do
    [ -f "$testlog" ] && grep -E '^\[ (FAIL|OK)' "$testlog" | tail -n 1
  done
  tail -n 1 "$log"
  if grep -qE '\.\.\. (ERROR|WARNING)' "$log" || ! grep -q '^Status: ' "$log"; then
    status=1
  fi
}

if [ "$mode" = with-python ] || [ "$mode" = both ]; then
  python="${RETICULATE_PYTHON:-$repo/.venv/bin/python}"
  # scripts/test.sh runs the testthat suite with Python in its own step just
  # before (PYGQA_CHECK_TESTS_WITH_PYTHON=0): the check then runs examples and
  # vignettes with Python, and the tests once, without it (below).
  with_python_options=()
  [ "${PYGQA_CHECK_TESTS_WITH_PYTHON:-1}" = 0 ] && with_python_options=(--no-tests)
  RETICULATE_PYTHON="$python" PYGQA_REQUIRE_PYTHON=1 run_check with-python "${with_python_options[@]}"
fi
if [ "$mode" = without-python ] || [ "$mode" = both ]; then
  base=$(command -v python3 || true)
  [ -n "$base" ] || { echo "no python3 to make an empty virtualenv" >&2; exit 1; }
  "$base" -m venv --without-pip "$work/empty-venv"
  RETICULATE_PYTHON="$work/empty-venv/bin/python" PYGQA_REQUIRE_PYTHON=0 run_check without-python
fi
exit $status
