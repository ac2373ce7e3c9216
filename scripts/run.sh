#!/usr/bin/env bash
# The entry points of the README:
#   bash scripts/run.sh demo   set everything up, then run the main job (the demo)
#   bash scripts/run.sh test   set everything up, then run every test
#   bash scripts/run.sh docs   set everything up, then build both documentation sites (docs/_site)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

# TensorFlow's start-up notices that TF_CPP_MIN_LOG_LEVEL cannot silence (they
# are written before TensorFlow's logging reads it): absl's note about logging
# before InitializeLog, "oneDNN custom operations are on", and oneDNN's
# fall-back to Eigen for a dtype. Exactly these lines are dropped from the
# commands' stderr; everything else (warnings, errors, tracebacks) passes.
TF_NOTICES='^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$'
TF_NOTICES+='|^I[0-9]{4} [0-9:.]+ +[0-9]+ port\.cc:[0-9]+\] oneDNN custom operations are on\.'
TF_NOTICES+='|^E[0-9]{4} [0-9:.]+ +[0-9]+ [a-z_]+\.cc:[0-9]+\] oneDNN supports DT_[A-Z0-9]+ only on '
TF_NOTICES+='platforms with AVX-512\. Falling back to the default Eigen-based implementation'
without_tf_notices() {
  # stderr through the filter, stdout untouched (fd 3), the command's status kept.
  # (grep's own status, 1 when nothing is left to print, does not count.)
  { "$@" 2>&1 1>&3 3>&- | { grep --line-buffered -v -E "$TF_NOTICES" >&2 || true; }; } 3>&1
  return "${PIPESTATUS[0]}"
}

case "${1:-}" in
  demo)
    without_tf_notices bash scripts/setup.sh
    KERAS_BACKEND=${KERAS_BACKEND:-tensorflow} without_tf_notices .venv/bin/python -m pygqa.demo
    ;;
  test)
    without_tf_notices bash scripts/setup.sh
    without_tf_notices bash scripts/test.sh
    ;;
  docs)
    without_tf_notices bash scripts/setup.sh
    without_tf_notices bash scripts/docs.sh
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test|docs" >&2
    exit 2
    ;;
esac
