#!/usr/bin/env bash
# The two entry points of the README:
#   bash scripts/run.sh demo   set everything up, then run the main job (the demo)
#   bash scripts/run.sh test   set everything up, then run every test
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

case "${1:-}" in
  demo)
    bash scripts/setup.sh
    KERAS_BACKEND=${KERAS_BACKEND:-tensorflow} .venv/bin/python -m pygqa.demo
    ;;
  test)
    bash scripts/setup.sh
    bash scripts/test.sh
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test" >&2
    exit 2
    ;;
esac
