#!/usr/bin/env bash
# The two set-up commands of the README:
#   bash run.sh demo   build and train the reference model on the generated reverse task,
#                      then decode a few examples
#   bash run.sh test   run the whole test suite
# Both install what they need first (the CPU build of torch before anything else, so no
# multi-GB CUDA build is pulled in), then the core and the plugin packages in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

install() {
  if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install -q torch==2.13.0
  fi
  local extras=$1
  "$PYTHON" -m pip install -q -e ".[$extras]"
  for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && "$PYTHON" -m pip install -q --no-deps -e "$plugin"
  done
  return 0
}

case "${1:-}" in
  demo)
    install dev
    out=${2:-runs/reference}
    rm -rf "$out"
    "$PYTHON" -m assembly check specs/reference.toml
    "$PYTHON" -m assembly train specs/reference.toml --out "$out"
    "$PYTHON" -m assembly generate "$out" --input "a b c d e f g" --input "t s r q" \
      --input "s e q t o s e q" --input "b a d c a f e"
    "$PYTHON" -m assembly evaluate "$out"
    ;;
  test)
    install dev,search
    "$PYTHON" -m pytest "${@:2}"
    ;;
  *)
    echo "usage: bash run.sh demo [RUN_DIR] | bash run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
