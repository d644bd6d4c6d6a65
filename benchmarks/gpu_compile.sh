#!/usr/bin/env bash
# torch.compile study of the built-in harness on one GPU (issue 18), all seven benchmarks at
# --size full, in about 9 minutes: harness path vs torch.compile's modes (reduce-overhead,
# max-autotune, max-autotune-no-cudagraphs, default), % of bf16 peak, cold and warm
# time-to-ready, and the auto table. Each worker (one benchmark, one group of modes) is killed
# after BUDGET s ("not finished in N s"); the whole study stops by DEADLINE s.
#
#   OUT=/some/dir bash benchmarks/gpu_compile.sh [--only resnet50,bert]
#
# Writes to $OUT: compile_study.json/.csv/.md (the tables), compile_study_report.json (GPU, torch,
# measured matmul peak), compile_modes.yaml (copy to fixtures/), compile_study.log, gpu.txt,
# work/ (LoadGen logs of the warm time-to-ready runs). Needs mlperf_loadgen importable (wheel on
# PYTHONPATH). Never changes MIG mode; starts no daemons. Check on a CPU: add --dry-run-cpu
# (tiny models; set DEADLINE/BUDGET small).
set -euo pipefail
: "${OUT:?set OUT to the folder for the results}"
DEADLINE=${DEADLINE:-500}      # seconds for the study (workers + warm ready runs)
BUDGET=${BUDGET:-200}          # seconds one worker may take
RESERVE=${RESERVE:-170}        # seconds of DEADLINE kept for the warm ready runs
PARALLEL=${PARALLEL:-5}        # workers compiling at once (timed windows take turns on the GPU)
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import mlperf_loadgen" 2>/dev/null || {
    echo "error: mlperf_loadgen is not importable; put the mlcommons-loadgen wheel on PYTHONPATH" >&2; exit 2; }
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,mig.mode.current,memory.total,clocks.max.sm \
    --format=csv || echo "no nvidia-smi"; } > "$OUT/gpu.txt" 2>&1 || true
CACHE=$(mktemp -d /tmp/pytest-mig-compile-study.XXXXXX)   # empty: the cold figures are cold
trap 'rm -rf "$CACHE"' EXIT
started=$(date +%s)
timeout --signal=TERM --kill-after=20 $((DEADLINE + 60)) \
    "$PYTHON" benchmarks/harness_throughput.py --compile-study --out "$OUT" --deadline "$DEADLINE" \
    --compile-budget "$BUDGET" --ready-reserve "$RESERVE" --parallel "$PARALLEL" \
    --compile-cache-dir "$CACHE" "$@" 2>&1 | tee "$OUT/compile_study.log"
echo "gpu_compile.sh: $(( $(date +%s) - started )) s; cache used $(du -sh "$CACHE" | cut -f1)" | tee -a "$OUT/compile_study.log"
