#!/usr/bin/env bash
# Issue 28, item 3: the README's main job (`pytest suites/datacenter -k ssd`, simulated GPU, the
# built-in harness on the CPU) on another machine's CPU restricted to 2 cores, as a new user's
# 2-core machine would run it: no GPU used (CUDA_VISIBLE_DEVICES empty, --mig-backend=simulated).
# Run from the repository root; writes into $OUT: cpu.txt (model, AVX-512/AMX flags, torch),
# first_run_profile.json (benchmarks/first_run_profile.py) and cpu_precision.json (ops and one
# model per precision, benchmarks/cpu_precision.py).   CORES=0,1  the two cores used
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=
PLUGIN=()
if [ -d .whl ]; then  # a machine without pytest-mig installed: the committed wheels, no network
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  PLUGIN=(-p pytest_mig.plugin)
fi
CORES=${CORES:-0,1}
{ grep -m1 "model name" /proc/cpuinfo
  echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512|amx)' | tr '\n' ' ')"
  echo "cores used: $CORES (taskset) of $(nproc --all)"
  python3 -c "import torch; print('torch', torch.__version__, torch.backends.cpu.get_cpu_capability())"
} | tee "$OUT/cpu.txt"
rm -rf /tmp/first-run-reports
taskset -c "$CORES" python3 benchmarks/first_run_profile.py --reports /tmp/first-run-reports \
  --json "$OUT/first_run_profile.json" -- "${PLUGIN[@]}" suites/datacenter -k "${K:-ssd}" -v \
  --mig-backend=simulated > "$OUT/first_run.log" 2>&1
echo "first run: exit $?" | tee -a "$OUT/cpu.txt"
grep -E "CPU precision|passed|failed" "$OUT/first_run.log" | tail -3
timeout "${PRECISION_T:-45}" taskset -c "$CORES" python3 benchmarks/cpu_precision.py \
  --models "${MODELS:-ssd-resnet34}" --json "$OUT/cpu_precision.json" > "$OUT/cpu_precision.log" 2>&1
echo "cpu_precision: exit $?" | tee -a "$OUT/cpu.txt"
