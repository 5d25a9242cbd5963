#!/usr/bin/env bash
# Create .venv with torch, the pack's requirements and what the tests and command line need.
# TORCH_SPEC overrides the torch requirement (default torch==2.13.0; ComfyUI users already have torch).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
.venv/bin/python -c "import torch, hyperlora_core; print('HyperLoRA environment ready: torch', torch.__version__)"
