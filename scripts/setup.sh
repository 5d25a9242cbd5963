#!/usr/bin/env bash
# Create .venv with torch, the pack's requirements, the command line's (huggingface_hub for downloads,
# transformers for CLIP) and the tests'. TORCH_SPEC overrides the torch requirement (default
# torch==2.13.0; ComfyUI users already have torch).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-cli.txt -r requirements-test.txt
.venv/bin/python -c "import torch, huggingface_hub, hyperlora_core; print('HyperLoRA environment ready: torch', torch.__version__, '- huggingface_hub', huggingface_hub.__version__)"
