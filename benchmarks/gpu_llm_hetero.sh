#!/usr/bin/env bash
# The v5 LLM (llama3.1-8b, full Llama-3.1-8B shape, seeded fp8 weights) on one H200/H100 with
# MIG disabled: decode probes, then LoadGen runs. CUDA MPS client shares stand in for the
# suite's MIG slices (--partition=mps). Run from the repository root on the GPU machine;
# everything lands in $OUT (8 files at most: small ones are tarred into llm_runs.tar.gz).
#
#   part=probe   benchmarks/llm_decode_probe.py on the whole GPU (batches 16 and 256, fp8 and
#                the bf16 upcast path) and on an MPS share sized like H200 1g.18gb (16/132
#                SMs' worth of threads, 16 GiB pinned memory; its own daemon, stopped on
#                every path): weight-read time, decode step per batch/context, prefill.
#   part=hetero  suites/datacenter-v5, llama3.1-8b Offline and Server performance at --size full,
#                --precision fp8 (fp8 x fp8 matmuls), on a 1g.18gb-sized MPS share, the `small`
#                background set (3d-unet, bert, resnet50, retinanet) on the other shares all
#                along (session lifetime). Server is judged against the catalogue's TTFT/TPOT.
#   part=whole   the same model alone on the whole GPU: Offline, then SingleStream (LoadGen's
#                token-latency mode: TTFT and TPOT percentiles as LoadGen logs them).
#   part=all     all three (default). About 7 minutes on an H200.
# Never changes MIG mode; every MPS daemon started here or by pytest-mig is stopped.
# A CPU check of the script itself (simulated H200, tiny models; the probe needs CUDA):
#   SIZE=tiny DEVICE=cpu LLM_PRECISION=fp8 PARTITION=mig SIM="--mig-sim-gpu H200-141GB" bash benchmarks/gpu_llm_hetero.sh
set -u
part=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
RUNS=$PWD/reports/llm_runs
rm -rf "$RUNS"
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # wheels carried to the GPU machine (LoadGen, pytest, nvidia-ml-py, ...)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
SIZE=${SIZE:-full} DEVICE=${DEVICE:-cuda} PRECISION=${PRECISION:-bf16} LLM_PRECISION=${LLM_PRECISION:-fp8}
MIN_MS=${MIN_MS:-10000}
# The plugin loads through its entry point when pytest-mig is installed, else from this checkout.
PLUGIN=(-p pytest_mig.plugin)
python3 -c "import importlib.metadata as m; m.distribution('pytest-mig')" 2>/dev/null && PLUGIN=()
PYTEST=(python3 -m pytest "${PLUGIN[@]}" -p no:cacheprovider --partition=${PARTITION:-mps} ${SIM:-}
        --mig-harness-opt size=$SIZE --mig-harness-opt device=$DEVICE --mig-harness-opt precision=$PRECISION
        --mig-harness-opt precision.llama3.1-8b=$LLM_PRECISION
        --mig-harness-opt batch_size.resnet50=256 --mig-harness-opt batch_size.bert=32
        --mig-harness-opt batch_size.retinanet=8 --mig-harness-opt batch_size.3d-unet=2
        --mig-main-startup 240 --mig-min-duration $MIN_MS -v)
WORKLOAD=(python3 -m pytest_mig.workload --benchmark llama3.1-8b --mode performance --size $SIZE
          --device $DEVICE --precision $LLM_PRECISION)
nvidia-smi -L 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,mig.mode.current --format=csv 2>/dev/null | tee "$RUNS/gpu.csv"
cat COMMIT_MEASURED > "$RUNS/commit.txt" 2>/dev/null || git rev-parse HEAD > "$RUNS/commit.txt"  # COMMIT_MEASURED: a copy without .git
start=$(date +%s)
MPS_DIR=/tmp/llm-probe-mps
stop_mps() {
  if [ -S "$MPS_DIR/control" ] || [ -e "$MPS_DIR/control" ]; then
    echo quit | CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR nvidia-cuda-mps-control 2>/dev/null
    sleep 1
  fi
}
trap stop_mps EXIT
if [ "$DEVICE" = cuda ] && { [ "$part" = all ] || [ "$part" = probe ]; }; then
  [ "${WHOLE_PROBE:-1}" = 1 ] && timeout ${PROBE_T:-100} python3 benchmarks/llm_decode_probe.py "$RUNS/probe_whole.json" \
    ${PROBE_ARGS:---batches 16,256 --contexts 640,1152 --upcast} 2>&1 | tee "$RUNS/probe_whole.txt" | tail -25
  mkdir -p $MPS_DIR $MPS_DIR.log
  if [ "${SHARE_PROBE:-1}" = 1 ] && CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR CUDA_MPS_LOG_DIRECTORY=$MPS_DIR.log nvidia-cuda-mps-control -d; then
    CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=${SHARE_PCT:-12} \
      CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=16384M timeout ${PROBE_T:-100} \
      python3 benchmarks/llm_decode_probe.py "$RUNS/probe_1g18gb_share.json" --batches 16 --contexts 640,1152 \
      2>&1 | tee "$RUNS/probe_1g18gb_share.txt" | tail -25
    stop_mps
  fi
fi
collect() {  # collect NAME DIR: results.json and each llama main's summary and record
  local r
  r=$(ls -d "$2"/*/ 2>/dev/null | tail -1)
  [ -n "$r" ] || return
  cp "$r/results.json" "$RUNS/$1_results.json"
  for d in "$r"/*llama3.1-8b*; do
    [ -d "$d" ] || continue
    local n
    n=$(basename "$d" | sed "s/^test_hetero_v5_llama3.1-8b-//" | tr -c "A-Za-z0-9._\n-" "_")
    cp "$d/main/mlperf_log_summary.txt" "$RUNS/$1_${n}_summary.txt" 2>/dev/null
    cp "$d/main/harness_path.json" "$RUNS/$1_${n}_harness_path.json" 2>/dev/null
    tail -c 4000 "$d/main.log" > "$RUNS/$1_${n}_main_log_tail.txt" 2>/dev/null
    cp "$d/progress.log" "$RUNS/$1_${n}_progress.log" 2>/dev/null
  done
}
if [ "$part" = all ] || [ "$part" = hetero ]; then
  timeout ${HETERO_T:-300} "${PYTEST[@]}" suites/datacenter-v5 \
    -k "${HETERO_K:-llama3.1-8b and performance}" --mig-background=session \
    --mig-reports "$PWD/reports/llm_hetero" 2>&1 | tee "$RUNS/hetero_pytest.txt" | tail -30
  collect hetero reports/llm_hetero
fi
if [ "$part" = all ] || [ "$part" = whole ]; then
  for sc in ${WHOLE_SCENARIOS:-Offline SingleStream}; do
    extra=(${WHOLE_ARGS:-})
    [ $sc = SingleStream ] && extra=(--min-query-count ${SS_QUERIES:-32})
    timeout ${WHOLE_T:-100} "${WORKLOAD[@]}" --scenario $sc --min-duration-ms $([ $sc = Offline ] && echo $MIN_MS || echo 5000) \
      "${extra[@]}" --log-dir "$PWD/reports/llm_whole_$sc" > "$RUNS/whole_${sc}_run.txt" 2>&1
    tail -8 "$RUNS/whole_${sc}_run.txt"
    cp reports/llm_whole_$sc/mlperf_log_summary.txt "$RUNS/whole_${sc}_summary.txt" 2>/dev/null
    cp reports/llm_whole_$sc/harness_path.json "$RUNS/whole_${sc}_harness_path.json" 2>/dev/null
  done
fi
python3 - "$RUNS" <<'EOF' | tee "$OUT/llm_parsed.json"
import json, sys
from pathlib import Path
from pytest_mig.results.summary import parse_summary, token_throughput
runs = Path(sys.argv[1])
found = {}
for path in sorted(runs.glob("*_summary.txt")):
    s = parse_summary(path)
    name = path.name.removesuffix("_summary.txt")
    record = runs / f"{name}_harness_path.json"
    found[name] = {"result": s.result, "scenario": s.scenario, "headline": [s.headline_name, s.headline_value],
                   "tokens": token_throughput(s), "invalid_reasons": list(s.invalid_reasons),
                   "ttft_tpot_ns": {k: v for k, v in s.latencies_ns.items() if k.startswith(("ttft", "tpot"))},
                   "harness_path": json.loads(record.read_text()) if record.exists() else None}
for path in sorted(runs.glob("probe_*.json")):
    found[path.stem] = json.loads(path.read_text())
print(json.dumps(found, indent=2))
EOF
echo "elapsed $(( $(date +%s) - start )) s" | tee "$RUNS/elapsed.txt"
tar czf "$OUT/llm_runs.tar.gz" -C "$(dirname "$RUNS")" "$(basename "$RUNS")"
cp "$RUNS"/hetero_pytest.txt "$OUT/" 2>/dev/null
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
