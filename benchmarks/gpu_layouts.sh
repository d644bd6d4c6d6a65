#!/usr/bin/env bash
# Issue 15, part 4 (layouts) on one NVIDIA H200 (or H100/A100) with MIG disabled: the layout
# comparison of suites/layouts -- the same mix (resnet50 on every slice) under 7x1g, 3x2g+1g
# and 1x7g (fixtures/layouts/compare.yaml), each instance an MPS client share sized from its own
# MIG profile (--partition=mps) -- then layouts.tsv/json/png and one timeline per case.
# Run from the repository root on the GPU machine; writes into $OUT; about 4 minutes.
# Never changes MIG mode; the MPS daemon pytest-mig starts is stopped on every path.
#   MIN_MS=5000        main min duration (ms)        LAYOUT_T=480  seconds for the run at most
#   PARTITION=mps      mps | none (whole GPU shared) LAYOUTS_K=    pytest -k filter (e.g. 3x2g)
#   HARNESS="size=full device=cuda precision=bf16"   built-in harness options
#   EXTRA=             more pytest arguments (the CPU check: --mig-backend=simulated ...)
# CPU check (no GPU): PARTITION=none HARNESS="size=tiny device=cpu" MIN_MS=300 LAYOUTS_K=3x2g \
#   EXTRA="--mig-backend=simulated --mig-sim-gpu H200-141GB" OUT=/tmp/lay bash benchmarks/gpu_layouts.sh
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
opts=()
for o in ${HARNESS:-size=full device=cuda precision=bf16}; do opts+=(--mig-harness-opt "$o"); done
k=()
[ -n "${LAYOUTS_K:-}" ] && k=(-k "$LAYOUTS_K")
# shellcheck disable=SC2206  # EXTRA is a list of words on purpose
extra=(${EXTRA:-})
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L | sed 's/UUID: [^)]*/UUID: .../' | tee "$OUT/gpu.txt"
  nvidia-smi --query-gpu=name,driver_version,mig.mode.current --format=csv >> "$OUT/gpu.txt"
fi
plugin=(-p pytest_mig.plugin)  # a bare checkout (PYTHONPATH); an installed one has it already
python3 -c "import importlib.metadata as m, sys; sys.exit(any(e.value.startswith('pytest_mig')
  for e in m.entry_points(group='pytest11')))" || plugin=()
rm -rf reports/layouts
timeout "${LAYOUT_T:-480}" python3 -m pytest "${plugin[@]}" -p no:cacheprovider \
  suites/layouts --partition="${PARTITION:-mps}" "${opts[@]}" "${k[@]}" "${extra[@]}" \
  --mig-min-duration "${MIN_MS:-5000}" --mig-sample-interval 0.1 \
  --mig-reports "$PWD/reports/layouts" -v -rA > "$OUT/layouts.log" 2>&1
echo "layouts: pytest exit $?" | tee "$OUT/layouts_run.txt"
tail -n 25 "$OUT/layouts.log"
r=$(ls -d reports/layouts/*/ 2>/dev/null | head -1)
if [ -n "$r" ]; then
  for f in layouts.tsv layouts.json layouts.png results.json; do
    [ -f "$r/$f" ] && cp "$r/$f" "$OUT/$f"
  done
  for d in "$r"/test_*/; do  # each layout case's timeline picture and progress
    [ -f "$d/timeline.png" ] && cp "$d/timeline.png" "$OUT/timeline_$(basename "$d").png"
    [ -f "$d/progress.log" ] && cp "$d/progress.log" "$OUT/progress_$(basename "$d").log"
  done
  [ -f "$OUT/layouts.json" ] && python3 -c "import sys; from pytest_mig.report.layouts import \
markdown, read_rows; print(markdown(read_rows(sys.argv[1])), end='')" "$OUT/layouts.json" \
    | tee "$OUT/layouts.md"
fi
pgrep -fa nvidia-cuda-mps || echo "no MPS daemon left running"
