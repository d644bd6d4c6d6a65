#!/usr/bin/env bash
# Real heterogeneous runs on an H100 with MIG disabled: CUDA MPS partitions stand in for
# 7 x 1g.10gb. Run from the repository root on the GPU machine; writes into $OUT.
#   part=sweep    measure + interference
#   part=measure  readiness latency, MPS scaling (one 1g.10gb share alone, seven together)
#   part=interference  every datacenter benchmark Offline, session backgrounds, isolated
#                 baseline first
#   part=classic  resnet50 Offline and Server with classic per-test backgrounds
# Never changes MIG mode; the MPS daemon pytest-mig starts is stopped on every path.
set -u
part=${1:-sweep}
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
PYTEST=(python3 -m pytest -p pytest_mig.plugin -p no:cacheprovider --partition=mps
        --mig-harness-opt size=full --mig-harness-opt device=cuda
        --mig-harness-opt precision=bf16 --mig-harness-opt precision.rnnt=fp16
        --mig-harness-opt batch_size.resnet50=256 --mig-harness-opt batch_size.ssd-resnet34=16
        --mig-harness-opt batch_size.ssd-mobilenet=128 --mig-harness-opt batch_size.bert=32
        --mig-harness-opt batch_size.rnnt=256 --mig-harness-opt batch_size.dlrm=256
        --mig-harness-opt no_cuda_graphs.dlrm=1
        --mig-harness-opt batch_size.3d-unet=2
        --mig-min-duration 4000 -v)
nvidia-smi -L
if [ "$part" = sweep ] || [ "$part" = measure ]; then
  timeout 60 python3 benchmarks/readiness.py --workloads 6 --lines 100000 --repeats 5 \
    --json "$OUT/h100_readiness.json" | tail -3
  timeout 200 python3 benchmarks/mps_scaling.py --benchmark resnet50 --batch-size 256 \
    --min-duration-ms 4000 --json "$OUT/h100_mps_scaling.json" | tail -12
fi
if [ "$part" = sweep ] || [ "$part" = interference ] || [ "$part" = both ]; then
  timeout ${SWEEP_T:-370} "${PYTEST[@]}" suites/datacenter -k "${SWEEP_K:-performance and Offline}" \
    --mig-background=session --mig-isolated-baseline --mig-reports "$PWD/reports/sweep" 2>&1 | tail -40
  r=$(ls -d reports/sweep/*/ | head -1)
  cp "$r/results.json" "$OUT/h100_mps_interference_results.json"
  cp "$r"/test_hetero_resnet50-Offline*/timeline.png "$OUT/h100_timeline_resnet50.png" 2>/dev/null
  cp "$r"/test_hetero_resnet50-Offline*/timeline.csv "$OUT/h100_timeline_resnet50.csv" 2>/dev/null
fi
if [ "$part" = classic ] || [ "$part" = both ]; then
  timeout ${CLASSIC_T:-200} "${PYTEST[@]}" suites/datacenter -k "${CLASSIC_K:-resnet50 and performance and (Offline or Server)}" \
    --mig-background=per-test --mig-reports "$PWD/reports/classic" 2>&1 | tail -40
  r=$(ls -d reports/classic/*/ | head -1)
  cp "$r/results.json" "$OUT/h100_mps_classic_results.json"
  cat "$r"/test_hetero_resnet50-*/progress.log > "$OUT/h100_mps_classic_progress.log"
  head -c 4000 "$(ls "$r"/test_hetero_resnet50-*/main.log | head -1)" > "$OUT/h100_mps_classic_main_log_excerpt.txt"
fi
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
