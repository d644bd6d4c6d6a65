#!/usr/bin/env bash
# The v5 LLM as main, vision and BERT backgrounds, on one H200 with MIG disabled: CUDA MPS
# client shares stand in for the suite's MIG slices (--partition=mps). Run from the repository
# root on the GPU machine; everything lands in $OUT. About 6-7 minutes (hetero part up to 330 s:
# measured on an H200 1g.18gb-sized share, 2026-11-30, the main needs ~80 s to its timed phase
# and ~195 s for LoadGen's 64 Offline queries at 0.33 samples/s; see
# benchmarks/results/h200_llm_hetero_cut_short/README.md).
#
#   part=hetero  suites/datacenter-v5, llama3.1-8b Offline performance at --size full (Llama-3.1-8B
#                shape, fp8 weights 7.5 GiB, bf16 compute) on an MPS share sized like H200
#                1g.18gb (16/132 SMs' worth of threads, 16 GiB pinned memory), the `small`
#                background set (3d-unet, bert, resnet50, retinanet) on the other shares in
#                their timed phase all along (session lifetime). Must be VALID.
#   part=tokens  the same model alone on the whole GPU, SingleStream (64 queries, LoadGen's
#                token-latency mode): TTFT and TPOT percentiles as LoadGen logs them.
#   part=all     both (default).
# Never changes MIG mode; the MPS daemon pytest-mig starts is stopped on every path.
# A CPU check of the script itself (simulated H200, tiny models):
#   SIZE=tiny DEVICE=cpu PRECISION=fp16 PARTITION=mig SIM="--mig-sim-gpu H200-141GB" bash benchmarks/gpu_llm_hetero.sh
set -u
part=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SIZE=${SIZE:-full} DEVICE=${DEVICE:-cuda} PRECISION=${PRECISION:-bf16}
# The plugin loads through its entry point when pytest-mig is installed, else from this checkout.
PLUGIN=(-p pytest_mig.plugin)
python3 -c "import importlib.metadata as m; m.distribution('pytest-mig')" 2>/dev/null && PLUGIN=()
PYTEST=(python3 -m pytest "${PLUGIN[@]}" -p no:cacheprovider --partition=${PARTITION:-mps} ${SIM:-}
        --mig-harness-opt size=$SIZE --mig-harness-opt device=$DEVICE --mig-harness-opt precision=$PRECISION
        --mig-harness-opt batch_size.resnet50=256 --mig-harness-opt batch_size.bert=32
        --mig-harness-opt batch_size.retinanet=8 --mig-harness-opt batch_size.3d-unet=2
        --mig-main-startup 240 --mig-min-duration ${MIN_MS:-20000} -v)
nvidia-smi -L 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,mig.mode.current --format=csv 2>/dev/null | tee "$OUT/gpu.csv"
start=$(date +%s)
if [ "$part" = all ] || [ "$part" = hetero ]; then
  timeout ${HETERO_T:-330} "${PYTEST[@]}" suites/datacenter-v5 \
    -k "${HETERO_K:-llama3.1-8b and Offline and performance}" --mig-background=session \
    --mig-reports "$PWD/reports/llm_hetero" 2>&1 | tee "$OUT/h200_llm_hetero_pytest.txt" | tail -30
  r=$(ls -d reports/llm_hetero/*/ 2>/dev/null | tail -1)
  if [ -n "$r" ]; then
    cp "$r/results.json" "$OUT/h200_llm_hetero_results.json"
    for d in "$r"/*llama3.1-8b*; do
      [ -d "$d" ] || continue
      cp "$d/main/mlperf_log_summary.txt" "$OUT/h200_llm_hetero_main_summary.txt" 2>/dev/null
      head -c 6000 "$d/main.log" > "$OUT/h200_llm_hetero_main_log_excerpt.txt" 2>/dev/null
      cp "$d/timeline.csv" "$d/timeline.png" "$OUT/" 2>/dev/null
      cat "$d/progress.log" > "$OUT/h200_llm_hetero_progress.log" 2>/dev/null
    done
  fi
fi
if [ "$part" = all ] || [ "$part" = tokens ]; then
  timeout ${TOKENS_T:-75} python3 -m pytest_mig.workload --benchmark llama3.1-8b \
    --scenario SingleStream --mode performance --size $SIZE --device $DEVICE --precision $PRECISION \
    --min-duration-ms 10000 --log-dir "$PWD/reports/llm_tokens" 2>&1 | tail -60 > "$OUT/h200_llm_tokens_run.txt"
  cp reports/llm_tokens/mlperf_log_summary.txt "$OUT/h200_llm_tokens_summary.txt" 2>/dev/null
fi
python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from pytest_mig.results.summary import parse_summary, token_throughput
out = Path(sys.argv[1])
found = {}
for name in ("h200_llm_hetero_main_summary.txt", "h200_llm_tokens_summary.txt"):
    if (out / name).exists():
        s = parse_summary(out / name)
        found[name] = {"result": s.result, "scenario": s.scenario, "headline": [s.headline_name, s.headline_value],
                       "tokens": token_throughput(s), "result_lines": s.result_lines,
                       "ttft_tpot_ns": {k: v for k, v in s.latencies_ns.items() if k.startswith(("ttft", "tpot"))}}
(out / "h200_llm_parsed.json").write_text(json.dumps(found, indent=2) + "\n")
print(json.dumps(found, indent=2))
EOF
echo "elapsed $(( $(date +%s) - start )) s" | tee "$OUT/elapsed.txt"
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
