#!/usr/bin/env bash
# The prepared PDE-Refiner check for a lent GPU machine (one call, under 9 minutes): the paper's Kuramoto–Sivashinsky
# data made on the GPU, pde_refiner vs the equal-steps MSE operator (a U-Net each) on an 8-minute training budget,
# corr_time with a paired bootstrap interval. Record the table in docs/benchmarks.md with the commit and date it prints.
#   bash benchmarks/refiner_gpu.sh                    # on the GPU machine, from a checkout with .venv (or PY=python)
#   bash benchmarks/refiner_gpu.sh --device cpu --dry-run   # check the script here, in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || PY=python3
if [ "${1:-}" != "--device" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec timeout 540 "$PY" benchmarks/refiner_gpu.py "$@"
