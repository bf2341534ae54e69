#!/usr/bin/env bash
# Every model family's training loop for a few steps on CUDA, fp32 / bf16 / fp16 (and DDP on 2 GPUs
# when there are two): steps/s and peak memory. About 1-3 minutes on one GPU with the defaults.
#   scripts/gpu_check.sh [--steps N] [--precisions fp32,bf16,fp16] [--families ...] [--compile]
#   scripts/gpu_check.sh --device cpu --steps 2     # smoke test of the same loops on the CPU
# Exit 0: every row ran; 1: a row failed; 2: no CUDA (one line; nothing run). See benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
