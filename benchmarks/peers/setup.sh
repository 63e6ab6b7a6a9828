#!/usr/bin/env bash
# Create one virtual environment per peer toolkit under benchmarks/peers/work/.
# Idempotent: a venv whose marker file exists is left alone.
# torch==2.13.0 is installed FIRST so that pip keeps the CPU build and does not
# pull a multi-GB CUDA build to satisfy the peers' plain "torch" requirement.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$HERE/work"
PY="${PYTHON:-python3}"
TORCH="torch==2.13.0"
mkdir -p "$WORK"

make_venv() {
    local name="$1"; shift
    local venv="$WORK/venv-$name"
    if [[ -f "$venv/.installed" ]]; then
        echo "[setup] $name: $venv already set up, skipping"
        return
    fi
    echo "[setup] $name: creating $venv"
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$TORCH"
    "$venv/bin/python" -m pip install --quiet "$TORCH" "$@"
    "$venv/bin/python" -m pip freeze > "$venv/requirements.lock"
    touch "$venv/.installed"
    echo "[setup] $name: done"
}

case "${1:-all}" in
    opennmt) make_venv opennmt "OpenNMT-py==3.0.4" ;;
    joeynmt) make_venv joeynmt "joeynmt==2.3.0" importlib_metadata ;;
    all)
        make_venv opennmt "OpenNMT-py==3.0.4"
        make_venv joeynmt "joeynmt==2.3.0" importlib_metadata
        ;;
    *) echo "usage: $0 [all|opennmt|joeynmt]" >&2; exit 2 ;;
esac
