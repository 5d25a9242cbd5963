#!/usr/bin/env bash
# GPU checks in one go: the kernel and core tests on CUDA, then the benchmark in fp16 and bf16.
# Reports land in $OUT (or ./gpu_out). Needs a Python with CUDA torch, safetensors and pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$python -m pytest -q -p no:cacheprovider tests/test_model_lora.py tests/test_bench_merge.py tests/test_model_hyperlora.py 2>&1 | tee "$out/pytest_gpu.log" | tail -5
for dtype in ${DTYPES:-fp16 bf16}; do
    $python -m hyperlora_core.bench --device cuda --dtype "$dtype" --repeats 10 ${BENCH_ARGS:-} \
        --cache-dir /tmp/hyperlora_bench --out "$out/bench_cuda_$dtype.json" 2>&1 | grep -v '^ '
done
