#!/usr/bin/env bash
# The GPU checks of issue 6 in one run, for a machine with one CUDA GPU and torch installed (the lent device
# machine: run from the repo root with OUT set). Writes JSON and logs under $OUT; each step goes on if one fails.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
step() { echo "=== $1 ($(date +%T))"; }
step versions
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
step "tests (every not-slow test; device auto = CUDA)"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m "not slow" -n 8 tests 2>&1 | tail -25 | tee "$OUT/tests.log"
step "bench (bf16, channels-last)"
timeout 120 $PY -m sharing_lab.cli bench --device cuda --json | tee "$OUT/bench.json"
step "bench (fp32, contiguous)"
timeout 120 $PY -m sharing_lab.cli bench --device cuda --precision fp32 --memory-format contiguous --json \
  | tee "$OUT/bench_fp32.json"
step "paper search projection (bf16, channels-last)"
timeout 180 $PY benchmarks/paper_search.py --device cuda --json | tee "$OUT/paper.json"
step "paper search projection (fp32, contiguous)"
timeout 180 $PY benchmarks/paper_search.py --device cuda --json --set runtime.precision=fp32 \
  --set runtime.memory_format=contiguous | tee "$OUT/paper_fp32.json"
step "CLI search + compiled retrain on CUDA"
rm -rf /tmp/gpu-runs
timeout 120 $PY -m sharing_lab.cli run-search --device cuda --out /tmp/gpu-runs --name gpu --set search.epochs=6 \
  --set search.warmup_epochs=2 --set search.eval_every=2 2>&1 | tail -4
timeout 150 $PY -m sharing_lab.cli retrain /tmp/gpu-runs/gpu --set retrain.epochs=3 --set runtime.compile=true 2>&1 \
  | tail -3
step done
