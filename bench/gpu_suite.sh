#!/usr/bin/env bash
# GPU suite for a lent GPU machine (e.g. the H100 of the `device` tool), in one call:
#   1. build confgf_fast._C with its CUDA kernels (FORCE_CUDA=1, editable install),
#   2. run the op tests (tests/test_ops_*) on the GPU: CUDA + compiled Triton vs the reference,
#   3. time the GPU backends (CUDA, Triton, eager reference) with triton.testing.do_bench / CUDA
#      events after warm-up, with achieved GB/s for langevin_step, into bench/results/gpu_<date>.json,
#   4. run the pytest-benchmark suite once (all backends) as a cross-check.
# Everything lands under $OUT (default: bench/results): logs, and bench/results/gpu_<date>.json
# (also copied into the working tree's bench/results/).
#
# Usage, from anywhere:  bash bench/gpu_suite.sh
# The machine needs python3 with torch (CUDA build), triton, pytest, pytest-benchmark; RDKit is
# optional (without it the benchmark graphs are synthetic with the same sizes, and the tests on
# RDKit molecules skip). Nothing is downloaded.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1

PY="${PYTHON:-python3}"
OUT="${OUT:-bench/results}"
DATE="$(date -u +%Y%m%d_%H%M%S)"
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # H100/H200; set e.g. "8.0;9.0" elsewhere
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
mkdir -p "$OUT/bench/results" bench/results
LOG="$OUT/gpu_suite_${DATE}.log"
JSON="$OUT/bench/results/gpu_${DATE}.json"
status=0

step() { echo "=== [$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

step "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
  "$PY" -c 'import triton; print("triton", triton.__version__)' 2>&1
  "$PY" -c 'import rdkit; print("rdkit", rdkit.__version__)' 2>&1 | tail -1
  nvcc --version 2>&1 | tail -1
} 2>&1 | tee -a "$LOG"

step "build (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
BUILD_LOG="$OUT/build_${DATE}.log"
if ! FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . >"$BUILD_LOG" 2>&1; then
  echo "pip editable install failed; trying setup.py build_ext --inplace" | tee -a "$LOG"
  if ! FORCE_CUDA=1 "$PY" setup.py build_ext --inplace >>"$BUILD_LOG" 2>&1; then
    tail -40 "$BUILD_LOG" | tee -a "$LOG"
    step "build failed: see $BUILD_LOG"
    exit 1
  fi
fi
tail -3 "$BUILD_LOG" | tee -a "$LOG"
"$PY" -c 'from confgf_fast import ops; print("available backends on cuda:", ops.available_backends("cuda"))' 2>&1 | tee -a "$LOG"

step "tests (tests/test_ops_*)"
if ! "$PY" -m pytest tests/test_ops_backends.py tests/test_ops_triton.py -q -rs -p no:cacheprovider \
    2>&1 | tee "$OUT/tests_${DATE}.log" | tail -25 | tee -a "$LOG"; then
  status=1
fi

step "GPU timings -> $JSON"
if ! "$PY" bench/bench_ops.py --json "$JSON" 2>&1 | tee -a "$LOG"; then
  status=1
fi
cp -f "$JSON" bench/results/ 2>/dev/null || true

step "pytest-benchmark cross-check (all backends)"
if ! "$PY" -m pytest bench/bench_ops.py -q -p no:cacheprovider --benchmark-max-time=0.5 \
    --benchmark-json="$OUT/bench_pytest_${DATE}.json" --benchmark-columns=mean,stddev,rounds \
    2>&1 | tail -60 | tee -a "$LOG"; then
  status=1
fi

step "done (status $status)"
exit "$status"
