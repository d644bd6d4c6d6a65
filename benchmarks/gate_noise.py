"""Does the regression gate trip on noise? Runs the same case of unchanged code RUNS times in a
row into one reports folder, each run gated against the earlier ones (--mig-compare=median:5 by
default, or last) with --mig-compare-fail=throughput:5%, and counts the runs the gate failed. With --mig-rounds N
(default 3) each run's headline is the median of N mains and the gate fails only beyond both
the 5 % threshold and the baseline's own spread; --rounds 1 shows the old single-sample gate.

    python benchmarks/gate_noise.py --out benchmarks/results/gate_noise.json
    python benchmarks/gate_noise.py --rounds 1 --out benchmarks/results/gate_noise_1round.json

The case is the built-in harness on the simulated GPU (resnet50 Offline, session backgrounds),
so it runs on any machine; the JSON records the CPU, the command and every run's figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = "resnet50-Offline-1g.10gb-performance"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threshold", default="throughput:5%")
    ap.add_argument("--compare", default="median:5",
                    help="baseline: median:N (the last N runs, their rounds' range the spread) "
                         "or last (the previous run, its own rounds the spread)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    reports = Path(tempfile.mkdtemp(prefix="gate-noise-"))
    cmd = [sys.executable, "-m", "pytest", "suites/datacenter", "-k",
           "resnet50 and Offline and performance", "--mig-background=session",
           f"--mig-rounds={args.rounds}", f"--mig-reports={reports}", f"--mig-compare={args.compare}",
           f"--mig-compare-fail={args.threshold}", "--mig-sample-interval=0", "-q",
           "-p", "no:cacheprovider"]
    runs = []
    for i in range(1, args.runs + 1):
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
        run_dir = max((p for p in reports.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        rec = next(t for t in json.loads((run_dir / "results.json").read_text())["tests"]
                   if t["case"] == CASE)
        compare = json.loads((run_dir / "compare.json").read_text()) \
            if (run_dir / "compare.json").exists() else {"comparisons": []}
        head = next((c for c in compare["comparisons"] if c["kind"] == "throughput"), None)
        runs.append({
            "run": i, "exit": proc.returncode, "outcome": rec["outcome"],
            "value": rec["result"]["value"] if rec.get("result") else None,
            "rounds": rec.get("rounds"), "wall_s": round(wall, 1),
            "change_pct": head and head.get("change_pct"),
            "regressed": bool(head and head.get("regressed")),
            "within_spread": bool(head and head.get("within_spread"))})
        print(json.dumps(runs[-1]), flush=True)
    failed = sum(1 for r in runs if r["regressed"])
    changes = [abs(r["change_pct"]) for r in runs if r["change_pct"] is not None]
    out = {"what": f"runs of unchanged code, each gated against the earlier ones ({args.compare})",
           "case": CASE, "threshold": args.threshold, "rounds": args.rounds,
           "compare": args.compare,
           "runs": len(runs), "gate_failures": failed,
           "beyond_threshold_inside_spread": sum(1 for r in runs if r["within_spread"]),
           "largest_change_pct": max(changes) if changes else None,
           "machine": {"cpu": cpu_model(), "cores": len(__import__("os").sched_getaffinity(0)),
                       "python": platform.python_version()},
           "command": " ".join(cmd[1:]), "per_run": runs,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{failed} of {len(runs)} runs failed the {args.threshold} gate "
          f"(rounds {args.rounds}); {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
