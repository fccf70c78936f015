#!/usr/bin/env bash
# The prepared check for a machine with GPUs (finishes in under 8 minutes): single-GPU samples/s for fp32, bf16 and
# bf16 + compile, DDP over all visible GPUs, `ups-exp run` on the DDP and FSDP profiles (the FSDP checkpoint loaded
# into a one-device model), peak memory; then the `gpu`-marked tests; the table is printed last.
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from a checkout with .venv (or PY=python)
#   bash benchmarks/gpu_check.sh --device cpu --model operator_tiny --batch 8 --steps 5   # check the script here
# Record the table in docs/benchmarks.md with the commit and date it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || PY=python3
export WANDB_MODE=offline MLFLOW_DISABLE_TELEMETRY=true
if [ "${1:-}" != "--device" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  timeout 120 "$PY" -m pytest -q -m gpu tests -p no:cacheprovider || echo "gpu-marked tests failed (see above)"
fi
exec timeout 420 "$PY" benchmarks/gpu_check.py "$@"
