#!/usr/bin/env bash
# The GPU cost run of benchmarks/gpu.py (3b preset, random weights, bf16; about 5 minutes on one H100/H200).
# From the repository root on a CUDA machine:  bash benchmarks/gpu.sh [OUT.json]  (default benchmarks/results/gpu_3b.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu_3b.json}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 900 "${PYTHON:-python}" benchmarks/gpu.py --preset 3b --device cuda --dtype bf16 --json "$out"
