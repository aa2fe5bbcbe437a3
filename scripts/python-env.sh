#!/usr/bin/env bash
# The Python side of the tests: independent readers (pyarrow, DuckDB) and Hugging Face's own
# forward/preprocessing (torch CPU, transformers) to check dinofeat against. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --retries 0 --timeout 5 \
  numpy pyarrow duckdb torch transformers pillow safetensors onnx
.venv/bin/python -c "import numpy, pyarrow, duckdb, torch, transformers, PIL, safetensors, onnx"
