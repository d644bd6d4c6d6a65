#!/usr/bin/env bash
# Issue 22 on one NVIDIA H200 (or H100) with MIG disabled, in one call: do the built-in
# workloads keep their slice busy? Stages in priority order, each only while the DEADLINE
# leaves it room (a stage not run is said in $OUT/stages.txt):
#   1. sweep_default: suites/sweeps with each workload's own slice batch (no batch_size):
#      resnet50 on every profile, bert / ssd-mobilenet / ssd-resnet34 on the 1g and 7g profiles
#   2. peers: the harness's resnet50 model loop vs torchvision (eager, reduce-overhead), batch 1024
#   3. sweep_bs<N>: resnet50 on every profile at each batch of BATCHES (samples/s vs batch)
#   4. peers_more: bert vs transformers BERT-large, retinanet vs torchvision RetinaNet
# Then saturation.md/json (benchmarks/saturation_table.py) over every results.json, and
# results.tar.gz (every run's results.json and main logs). Each pytest run is the plugin's own
# CUDA MPS share per MIG profile (--partition=mps); the daemon it starts is stopped on every path.
# Never changes MIG mode.
#   OUT=/tmp/out DEADLINE=540 BATCHES="64 256" MIN_MS=2000 [SWEEP_K="-k of stage 1"] bash benchmarks/gpu_saturation.sh
# CPU check (no GPU, simulated H200, tiny models): DRY=1 OUT=/tmp/sat bash benchmarks/gpu_saturation.sh
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
DEADLINE=${DEADLINE:-540}
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -n "${DRY:-}" ]; then
  HARNESS=(--mig-harness-opt size=tiny --mig-harness-opt device=cpu)
  PART=(--partition=none --mig-backend=simulated --mig-sim-gpu H200-141GB)
  PEERS=(--device cpu --size tiny --seconds 0.3 --batch 8)
  MIN_MS=${MIN_MS:-300}
else
  HARNESS=(--mig-harness-opt size=full --mig-harness-opt device=cuda --mig-harness-opt precision=bf16)
  PART=(--partition=mps)
  PEERS=()
  MIN_MS=${MIN_MS:-2000}
fi
{ cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo "commit unknown"; } > "$OUT/commit.txt"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L | sed 's/UUID: [^)]*/UUID: .../' > "$OUT/gpu.txt"
  nvidia-smi --query-gpu=name,driver_version,mig.mode.current,clocks.max.sm --format=csv >> "$OUT/gpu.txt"
fi
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" >> "$OUT/gpu.txt" 2>&1
: > "$OUT/stages.txt"
plugin=(-p pytest_mig.plugin)  # a bare checkout (PYTHONPATH); an installed one has it already
python3 -c "import importlib.metadata as m, sys; sys.exit(any(e.value.startswith('pytest_mig')
  for e in m.entry_points(group='pytest11')))" || plugin=()
ROOM=0
stage() {  # stage NAME NEED_S CMD...: run CMD when at least NEED_S seconds are left (CMD bounds itself by $ROOM)
  local name=$1 need=$2; shift 2
  ROOM=$(left)
  if [ "$ROOM" -lt "$need" ]; then
    echo "$name: NOT RUN ($ROOM s left, needs about $need s)" | tee -a "$OUT/stages.txt"; return
  fi
  local t0; t0=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/stages.txt"
}
bounded() { timeout --signal=TERM --kill-after=15 "$ROOM" "$@"; }
sweep() {  # sweep NAME -k EXPR [batch]: one pytest run of suites/sweeps
  local name=$1 expr=$2 bs=${3:-}
  local extra=()
  [ -n "$bs" ] && extra=(--mig-harness-opt batch_size="$bs")
  rm -rf "reports/$name"
  bounded python3 -m pytest "${plugin[@]}" -p no:cacheprovider suites/sweeps -k "$expr" "${PART[@]}" \
    "${HARNESS[@]}" "${extra[@]}" --mig-min-duration "$MIN_MS" --mig-sample-interval 0.1 \
    --mig-reports "$PWD/reports/$name" -q -rA
  local r; r=$(ls -d "reports/$name"/*/ 2>/dev/null | head -1)
  [ -n "$r" ] && [ -f "$r/results.json" ] && cp "$r/results.json" "$OUT/results_$name.json"
  return 0
}
stage sweep_default "${SWEEP_NEED:-150}" sweep sweep_default "${SWEEP_K:-resnet50 or 1g. or 7g.}"  # smallest and whole-GPU profiles of any GPU
stage peers 60 bounded python3 benchmarks/peers.py --benchmarks resnet50 "${PEERS[@]}" --json "$OUT/peers.json" --deadline 90
for bs in ${BATCHES:-64 256}; do
  stage "sweep_bs$bs" 100 sweep "sweep_bs$bs" resnet50 "$bs"
done
stage peers_more 90 bounded python3 benchmarks/peers.py --benchmarks bert,retinanet "${PEERS[@]}" \
  --json "$OUT/peers_more.json" --deadline 120
runs=("$OUT"/results_*.json)
[ -e "${runs[0]}" ] && python3 benchmarks/saturation_table.py "$OUT/saturation.md" "${runs[@]}" > /dev/null
pgrep -fa nvidia-cuda-mps && echo "MPS daemon still running" | tee -a "$OUT/stages.txt" \
  || echo "no MPS daemon left running" | tee -a "$OUT/stages.txt"
echo "gpu_saturation.sh: $(( $(date +%s) - START )) s" | tee -a "$OUT/stages.txt"
# One bundle (every run's results.json, stage logs, the mains' logs); the summaries stay beside it.
mkdir -p "$OUT/bundle"
mv "$OUT"/results_*.json "$OUT"/*.log "$OUT/commit.txt" "$OUT/bundle/" 2>/dev/null
for f in reports/sweep_*/*/test_*/main.log; do
  [ -f "$f" ] && mkdir -p "$OUT/bundle/$(dirname "$f")" && cp "$f" "$OUT/bundle/$f"
done
tar -czf "$OUT/bundle.tar.gz" -C "$OUT" bundle && rm -rf "$OUT/bundle"
ls -la "$OUT"
