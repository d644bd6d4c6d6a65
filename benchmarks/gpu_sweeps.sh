#!/usr/bin/env bash
# Issue 15, part 4 on one NVIDIA H200 (or H100) with MIG disabled: the profile sweep of
# suites/sweeps (resnet50 alone on each MIG profile's CUDA MPS share, sized from the profile)
# for each batch size in BATCHES, then the table and curves (benchmarks/sweep_table.py).
# Run from the repository root on the GPU machine; writes into $OUT; about 5 minutes.
# Never changes MIG mode; the MPS daemon pytest-mig starts is stopped on every path.
#   BATCHES="8 64 256"  batch sizes (one pytest run each)   MIN_MS=2000  main min duration
#   BENCH=resnet50      benchmark of suites/sweeps to sweep  SWEEP_T=100  seconds per run at most
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
PYTEST=(python3 -m pytest -p pytest_mig.plugin -p no:cacheprovider --partition=mps
        --mig-harness-opt size=full --mig-harness-opt device=cuda
        --mig-harness-opt precision=bf16)
nvidia-smi -L | sed 's/UUID: [^)]*/UUID: .../' | tee "$OUT/gpu.txt"
nvidia-smi --query-gpu=name,driver_version,mig.mode.current --format=csv >> "$OUT/gpu.txt"
runs=()
for bs in ${BATCHES:-8 64 256}; do
  rm -rf "reports/sweep-bs$bs"
  timeout "${SWEEP_T:-100}" "${PYTEST[@]}" suites/sweeps -k "${BENCH:-resnet50}" \
    --mig-harness-opt batch_size="$bs" --mig-min-duration "${MIN_MS:-2000}" \
    --mig-sample-interval 0.1 --mig-reports "$PWD/reports/sweep-bs$bs" -q -rA \
    > "$OUT/sweep_bs$bs.log" 2>&1
  echo "batch $bs: pytest exit $?" | tee -a "$OUT/sweep_runs.txt"
  r=$(ls -d reports/sweep-bs$bs/*/ 2>/dev/null | head -1)
  if [ -n "$r" ] && [ -f "$r/results.json" ]; then
    cp "$r/results.json" "$OUT/sweep_bs$bs.json"
    runs+=("$OUT/sweep_bs$bs.json")
    for d in "$r"/test_*/; do  # the timeline picture of each profile's case
      [ -f "$d/timeline.png" ] && cp "$d/timeline.png" "$OUT/timeline_bs${bs}_$(basename "$d").png"
    done
  fi
done
[ ${#runs[@]} -gt 0 ] && python3 benchmarks/sweep_table.py "$OUT" "${runs[@]}" | tee "$OUT/sweep_table.md"
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
