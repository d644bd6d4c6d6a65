"""Suite wall time: the same datacenter smoke cases with per-test and with session backgrounds.

Runs `pytest suites/datacenter` twice on the simulated default (built-in harness, real
LoadGen, CPU-sized models), once per background lifetime, and reports both wall times and
the ratio. The case selection is the same in both runs.

    python benchmarks/suite_walltime.py --cases 12 --json benchmarks/results/suite_walltime.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# 12 performance cases: every datacenter benchmark, Offline first, then other scenarios.
DEFAULT_SELECTION = ("performance and (Offline or (resnet50 and Server) or (bert and Server) "
                     "or (ssd-mobilenet and SingleStream) or (rnnt and SingleStream) "
                     "or (dlrm and Server))")


def run_suite(lifetime: str, selection: str, reports: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pytest", "suites/datacenter", "-k", selection,
           f"--mig-background={lifetime}", "--mig-backend=simulated", "-q",
           "-p", "no:cacheprovider", f"--mig-reports={reports}", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-400:]
    results = sorted(reports.glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    tests = json.loads(results[-1].read_text())["tests"] if results else []
    return {"lifetime": lifetime, "wall_s": wall, "exit_code": res.returncode, "summary": tail,
            "cases": len(tests), "passed": sum(t["outcome"] == "passed" for t in tests),
            "command": " ".join(cmd[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="selection", default=DEFAULT_SELECTION)
    ap.add_argument("--reports", type=Path, default=ROOT / "reports" / "suite-walltime")
    ap.add_argument("--json", type=Path)
    ap.add_argument("extra", nargs="*", help="more pytest arguments for both runs")
    a = ap.parse_args()
    runs = [run_suite(life, a.selection, a.reports / life, a.extra)
            for life in ("session", "per-test")]
    session, per_test = runs
    out = {"runs": runs, "ratio_per_test_over_session": per_test["wall_s"] / session["wall_s"],
           "goal_ratio": 3.0, "goal_met": per_test["wall_s"] / session["wall_s"] >= 3.0,
           "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
