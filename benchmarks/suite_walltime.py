"""Suite wall time: the same datacenter cases with per-test and with session backgrounds.

Runs `pytest suites/datacenter -k SELECTION` twice, once per background lifetime (session
first), with the same cases and arguments, and reports both wall times, each case's time
(backgrounds started -> main end: the per-test run pays the background start-up and wind-down
in every case, the session run once) and the ratio per-test / session measured in this one
call. Each pytest run has a wall-clock bound (`--run-timeout`) so the whole call stays within
a GPU-machine call's limit; a run cut short is reported as such, never as a result.

CPU default (simulated GPU, built-in harness, CPU-sized models):

    python benchmarks/suite_walltime.py --json benchmarks/results/suite_walltime_cpu.json

On a shared host (root only) `--boost N` gives both runs' processes autogroup nice -N, standing
in for a dedicated machine (see first_run_profile.py); both runs get the same treatment.

GPU machine (MIG disabled, CUDA MPS shares sized like 1g.10gb, two cases; about 4-6 minutes,
at most 2 x 240 s; the MPS daemon is the plugin's own, stopped on every path):

    OUT=${OUT:-/tmp/out} python3 benchmarks/suite_walltime.py --gpu --run-timeout 240 \
        --json "$OUT/h200_suite_walltime_mps.json"
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Three performance cases of light models (the comparison, not the models, is measured);
# two on the GPU machine, where every per-test case builds six full-size models afresh.
DEFAULT_SELECTION = "performance and Offline and (resnet50 or ssd-mobilenet or dlrm)"
GPU_SELECTION = "performance and Offline and (resnet50 or dlrm)"
# The built-in harness on one GPU under MPS (as benchmarks/h100_mps_run.sh), 2 s mains.
GPU_ARGS = ["--partition=mps",
            "--mig-harness-opt", "size=full", "--mig-harness-opt", "device=cuda",
            "--mig-harness-opt", "precision=bf16", "--mig-harness-opt", "precision.rnnt=fp16",
            "--mig-harness-opt", "batch_size.resnet50=256",
            "--mig-harness-opt", "batch_size.ssd-resnet34=16",
            "--mig-harness-opt", "batch_size.ssd-mobilenet=128",
            "--mig-harness-opt", "batch_size.bert=32", "--mig-harness-opt", "batch_size.rnnt=256",
            "--mig-harness-opt", "batch_size.dlrm=256", "--mig-harness-opt", "no_cuda_graphs.dlrm=1",
            "--mig-harness-opt", "batch_size.3d-unet=2", "--mig-min-duration", "2000"]


def run_suite(lifetime: str, selection: str, reports: Path, extra: list[str],
              timeout_s: float, boost: int = 0) -> dict:
    cmd = [sys.executable, "-m", "pytest", "suites/datacenter", "-k", selection,
           f"--mig-background={lifetime}", "-q", "-p", "no:cacheprovider",
           f"--mig-reports={reports}", *extra]
    if "--partition=mps" not in extra:
        cmd.append("--mig-backend=simulated")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=False)
    sampler = None
    if boost:
        from first_run_profile import Sampler  # benchmarks/ is sys.path[0] when run as a script
        sampler = Sampler(proc.pid, interval=0.25, boost=boost)
        sampler.start()
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        cut_short = False
    except subprocess.TimeoutExpired:
        proc.send_signal(2)  # Ctrl-C: pytest-mig stops every workload and the MPS daemon
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        cut_short = True
    wall = time.perf_counter() - t0
    if sampler is not None:
        sampler.done.set()
    lines = output.strip().splitlines()
    results = sorted(reports.glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    tests = json.loads(results[-1].read_text())["tests"] if results else []
    return {"lifetime": lifetime, "wall_s": round(wall, 2), "exit_code": proc.returncode,
            "cut_short": cut_short, "summary": lines[-1] if lines else "",
            "cases": len(tests), "passed": sum(t["outcome"] == "passed" for t in tests),
            "per_case": case_times(tests), "command": " ".join(["pytest", *cmd[3:]])}


def plugin_args() -> list[str]:
    """`-p pytest_mig.plugin` where the package is not installed (a bare checkout, as on the
    GPU machine); an installed plugin registers itself through its entry point."""
    from importlib.metadata import entry_points
    installed = any(ep.value == "pytest_mig.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_mig.plugin"]


def case_times(tests: list[dict]) -> dict[str, dict]:
    """Per case: backgrounds started -> main end, and -> the last of its workloads ended (the
    per-test wind-down; session backgrounds outlive the case, so there it is the main's end)."""
    cases = {}
    for t in tests:
        ph = t.get("phases") or {}
        start = ph.get("backgrounds_started") or ph.get("backgrounds_ready") or ph.get("main_start")
        end = ph.get("main_end")
        ends = [end, *(h.get("ended_at") for h in t.get("health") or [])]
        last = max((e for e in ends if e), default=None)
        cases[t["case"]] = {"outcome": t["outcome"],
                            "to_main_end_s": round(end - start, 2) if start and end else None,
                            "to_last_workload_end_s": round(last - start, 2) if start and last else None}
    return cases


def machine() -> dict:
    out = {"cores": os.cpu_count(), "python": platform.python_version(),
           "load_avg_1min_at_start": os.getloadavg()[0]}
    try:
        out["cpu"] = next(ln.split(":", 1)[1].strip() for ln in
                          Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        out["cpu"] = platform.processor()
    if shutil.which("nvidia-smi"):
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        out["gpus"] = res.stdout.strip().splitlines()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="selection", default=None,
                    help=f"cases (default: {DEFAULT_SELECTION!r}; with --gpu {GPU_SELECTION!r})")
    ap.add_argument("--gpu", action="store_true",
                    help="the GPU machine: CUDA MPS partitions, built-in harness at full size on CUDA")
    ap.add_argument("--run-timeout", type=float, default=600.0,
                    help="wall-clock bound of each pytest run, seconds (a run cut short is marked)")
    ap.add_argument("--boost", type=int, default=0, metavar="N",
                    help="root: autogroup nice -N for both runs' processes (shared host)")
    ap.add_argument("--reports", type=Path, default=ROOT / "reports" / "suite-walltime")
    ap.add_argument("--json", type=Path)
    ap.add_argument("extra", nargs="*", help="more pytest arguments for both runs")
    a = ap.parse_args()
    extra = [*plugin_args(), *(GPU_ARGS if a.gpu else []), *a.extra]
    a.selection = a.selection or (GPU_SELECTION if a.gpu else DEFAULT_SELECTION)
    host = machine()
    runs = [run_suite(life, a.selection, a.reports / life, extra, a.run_timeout, a.boost)
            for life in ("session", "per-test")]
    session, per_test = runs
    same_cases = sorted(session["per_case"]) == sorted(per_test["per_case"])
    complete = (not any(r["cut_short"] for r in runs) and same_cases and session["cases"] > 0
                and all(r["passed"] == r["cases"] for r in runs))
    host["autogroup_boost"] = -a.boost if a.boost else None
    out = {"machine": host, "selection": a.selection, "runs": runs, "same_cases": same_cases,
           "complete": complete,
           "ratio_per_test_over_session": round(per_test["wall_s"] / session["wall_s"], 3)
           if complete else None}
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if complete and all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
