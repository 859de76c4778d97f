#!/usr/bin/env bash
# Every GPU benchmark in one command, under 8 minutes, no weights needed: see bench/gpu_suite.py.
#
#   bench/gpu_suite.sh                                        # GPU machine: writes bench/results_*_cuda.md
#   bench/gpu_suite.sh --device cpu --tiny --out-dir /tmp/x   # smoke run (tests/test_gpu_suite.py)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m bench.gpu_suite "$@"
