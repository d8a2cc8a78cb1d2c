#!/usr/bin/env bash
# Everything mlip checks on a GPU machine, in one call (issue 12 part 7): the CUDA tests, then the
# GPU training-throughput benchmark, written to docs/benchmarks.md. Run from the repository root:
#   bash scripts/gpu_check.sh            (device tool: run command="bash scripts/gpu_check.sh")
# Uses the torch already installed when it sees a GPU (a CUDA build); installs mlip beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=4
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" \
  || { python3 -m venv --system-site-packages .venv-gpu && . .venv-gpu/bin/activate; }
python3 -m pip install -q -e ".[dev]" 2>&1 | tail -2
python3 -m pytest -q tests/test_cuda.py
(cd scripts && python3 bench_gpu.py --write --steps 50)
python3 scripts/bench_scale.py --help >/dev/null 2>&1 || true
mkdir -p "${OUT:-/tmp}" && cp docs/benchmarks.md "${OUT:-/tmp}/benchmarks.md"
