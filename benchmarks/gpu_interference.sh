#!/usr/bin/env bash
# Issue 11 on one NVIDIA H100/H200 with MIG disabled: CUDA MPS shares stand in for 1g slices.
# Run from the repository root on the GPU machine; writes into $OUT. Never changes MIG mode;
# the MPS daemon pytest-mig starts is stopped on every path (checked at the end).
#   part=signal  a SIGTERM to pytest's process group in the middle of a main (a CI job limit):
#                where the MPS daemon lives (pgid/sid), and what the session backgrounds report
#   part=sweep   REPEATS x every datacenter Offline main, isolated baselines first (no
#                neighbour on the GPU, checked with NVML's process list), then the six session
#                backgrounds once and the seven mains under load
#   FIRST=k      number the sweep's repeats from k (to split repeats across calls)
set -u
part=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
PYTEST=(python3 -m pytest -p pytest_mig.plugin -p no:cacheprovider --partition=mps
        --mig-harness-opt size=full --mig-harness-opt device=cuda
        --mig-harness-opt precision=bf16 --mig-harness-opt precision.rnnt=fp16
        --mig-harness-opt batch_size.resnet50=256 --mig-harness-opt batch_size.ssd-resnet34=16
        --mig-harness-opt batch_size.ssd-mobilenet=128 --mig-harness-opt batch_size.bert=32
        --mig-harness-opt batch_size.rnnt=256 --mig-harness-opt batch_size.dlrm=256
        --mig-harness-opt no_cuda_graphs.dlrm=1 --mig-harness-opt batch_size.3d-unet=2)
nvidia-smi -L | sed 's/UUID: [^)]*/UUID: .../' | tee "$OUT/gpu.txt"
nvidia-smi --query-gpu=name,driver_version,mig.mode.current --format=csv >> "$OUT/gpu.txt"

if [ "$part" = all ] || [ "$part" = signal ]; then
  rm -rf reports/signal
  setsid "${PYTEST[@]}" suites/datacenter -k "resnet50 and performance and Offline" \
    --mig-background=session --mig-min-duration 60000 --mig-reports "$PWD/reports/signal" -v \
    > "$OUT/signal_pytest.log" 2>&1 &
  leader=$!
  for _ in $(seq 1 150); do  # until the main runs (backgrounds ready), at most 150 s
    grep -qs "main resnet50 Offline performance running" reports/signal/*/*/progress.log && break
    sleep 1
  done
  sleep 5
  { echo "# pid pgid sid comm, pytest leader $leader (its own session: pgid = sid = $leader)"
    ps -eo pid,pgid,sid,comm | grep -E "pytest|python|nvidia-cuda-mps" ; } > "$OUT/signal_ps.txt"
  kill -TERM -- "-$leader"   # the whole process group, as a job limit does
  wait "$leader"; echo "pytest exit status: $?" >> "$OUT/signal_pytest.log"
  cp reports/signal/*/session-backgrounds.json "$OUT/signal_session_backgrounds.json" 2>/dev/null
  pgrep -fa nvidia-cuda-mps >> "$OUT/signal_ps.txt" || echo "no MPS daemon left running" >> "$OUT/signal_ps.txt"
fi

if [ "$part" = all ] || [ "$part" = sweep ]; then
  # REPEATS sweeps at once, one per GPU (each pytest leases a free GPU: use a machine with
  # REPEATS GPUs; they share the host's CPUs, not a GPU).
  first=${FIRST:-1}
  for k in $(seq "$first" $((first + ${REPEATS:-1} - 1))); do
    rm -rf "reports/sweep-$k"
    if [ "$k" = "$first" ]; then sel="performance and Offline"; else sel=${K2:-performance and Offline}; fi
    ( timeout "${SWEEP_T:-420}" "${PYTEST[@]}" suites/datacenter -k "$sel" \
        --mig-background=session --mig-isolated-baseline --mig-min-duration "${MIN_MS:-2000}" \
        --mig-reports "$PWD/reports/sweep-$k" -q -rA > "reports/sweep-$k.log" 2>&1
      r=$(ls -d reports/sweep-$k/*/ | head -1)
      cp "$r/results.json" "$OUT/interference_r$k.json"
      cp "$r/session-backgrounds.json" "$OUT/backgrounds_r$k.json" 2>/dev/null ) &
  done
  wait
  tail -n 12 reports/sweep-*.log
  python3 benchmarks/interference_table.py "$OUT"/interference_r*.json | tee "$OUT/interference_table.md"
fi
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
