#!/usr/bin/env bash
# Creates/updates .venv at the repository root and installs imnet into it (editable), reusing pip's
# cache and never reinstalling what is already there. Then swaps Pillow for Pillow-SIMD (compiled from
# source), falling back to Pillow with a visible warning when that build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch/torchvision first, pinned to the CUDA builds this project is tested with; skipped when present.
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  $PIP install "torch==2.14.1" "torchvision==0.29.1"
fi
$PIP install -e ".[test]"
# Pillow-SIMD replaces Pillow (torchvision pulled Pillow in). Its versions carry a ".postN" suffix.
if ! "$VENV/bin/python" -c "import PIL, sys; sys.exit(0 if '.post' in PIL.__version__ else 1)" 2>/dev/null; then
  if ! $PIP install --force-reinstall --no-deps --no-binary pillow-simd pillow-simd; then
    echo "WARNING: pillow-simd failed to build; imnet falls back to stock Pillow (slower decoding)." >&2
    "$VENV/bin/python" -c "import PIL" 2>/dev/null || $PIP install --force-reinstall --no-deps pillow
  fi
fi
# Stock Pillow beside it, for the loader benchmark's baseline (run in a subprocess with this folder
# first on sys.path); skipped when present, a warning when it fails.
if [ ! -f "$VENV/stock-pillow/PIL/__init__.py" ]; then
  "$VENV/bin/python" -m pip install --target "$VENV/stock-pillow" --no-deps pillow \
    || echo "WARNING: stock Pillow not installed into $VENV/stock-pillow; imnet bench loader's baseline will use the installed PIL." >&2
fi
"$VENV/bin/imnet" info >&2 || true
