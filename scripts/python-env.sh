#!/usr/bin/env bash
# Creates .venv with scripts/python-requirements.txt, once: `npm test` runs this first, so a venv
# installed from this exact list (a copy of it is kept in .venv) costs one file compare. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=scripts/python-requirements.txt
installed=.venv/dinofeat-requirements.txt
if [ -x .venv/bin/python ] && cmp -s "$requirements" "$installed"; then
  exit 0
fi
echo "python-env: installing $requirements into .venv (once)" >&2
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --retries 0 --timeout 5 -r "$requirements"
.venv/bin/python -c "import numpy, pyarrow, duckdb, torch, transformers, PIL, safetensors, onnx"
cp "$requirements" "$installed"
