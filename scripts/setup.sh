#!/usr/bin/env bash
# Sets up everything pygqa needs on a Debian 12 machine: system packages (R, pandoc),
# reticulate >= 1.41, the Python virtual environment in .venv, and the R package.
# Idempotent: each step checks what is already there and skips work that is done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- 1. Debian packages -------------------------------------------------------
APT_PACKAGES=(
  r-base-core r-base-dev r-cran-testthat r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown pandoc
  # reticulate's own R dependencies, all in bookworm
  r-cran-rcpp r-cran-rcpptoml r-cran-here r-cran-jsonlite r-cran-png r-cran-rappdirs
  r-cran-rlang r-cran-withr r-cran-matrix
  # the documentation sites (scripts/docs.sh) and their screenshots (tests/test_docs.py)
  r-cran-pkgdown chromium
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. reticulate >= 1.41 ------------------------------------------------------
bash scripts/install_reticulate.sh

# --- 3. Python virtual environment ---------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.pygqa-setup-stamp
want=$(cat pyproject.toml scripts/requirements-dev.txt scripts/requirements-keras-hub.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python packages into .venv (pinned in scripts/requirements-dev.txt)"
  pip_log=.venv/pip-install.log
  {
    .venv/bin/python -m pip install --upgrade pip &&
    .venv/bin/python -m pip install -r scripts/requirements-dev.txt &&
    .venv/bin/python -m pip install --no-deps -r scripts/requirements-keras-hub.txt &&
    .venv/bin/python -m pip install --no-deps -e .
  } >"$pip_log" 2>&1 || { tail -n 40 "$pip_log" >&2; log "pip failed, full log: $pip_log"; exit 1; }
  echo "$want" > "$stamp"
fi

# --- 4. The R package ----------------------------------------------------------
r_version=$(sed -n 's/^Version: //p' r-wrapper/DESCRIPTION)
installed=$(Rscript -e 'cat(tryCatch(as.character(packageVersion("pygqa")), error = function(e) ""))' 2>/dev/null || true)
r_stamp=.venv/.pygqa-r-stamp
r_want=$(find r-wrapper -type f ! -path '*/.Rcheck/*' -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1)
if [ "$installed" != "$r_version" ] || [ ! -f "$r_stamp" ] || [ "$(cat "$r_stamp")" != "$r_want" ]; then
  log "installing the R package from r-wrapper/"
  r_log=.venv/r-install.log
  as_root R CMD INSTALL --no-multiarch r-wrapper >"$r_log" 2>&1 ||
    { tail -n 40 "$r_log" >&2; log "R CMD INSTALL failed, full log: $r_log"; exit 1; }
  echo "$r_want" > "$r_stamp"
fi
log "ready: Python $(.venv/bin/python -c 'import keras; print("keras", keras.__version__)'), R pygqa $r_version"
