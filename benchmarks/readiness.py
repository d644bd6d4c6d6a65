"""Readiness latency: time from a workload writing its ready line to pytest-mig knowing it.

N workloads each print K noise lines, then a ready line carrying the time it was written.
Our reader (pytest_mig.orchestration.process.Workload: blocking per-line reads in a thread)
is compared with a reader that sleeps 0.5 s after each line, as NVIDIA's
launch_heterogeneous_mig.py does. The sleeping reader is measured at small K and its latency at large K follows from
the same per-line cost (it cannot finish 100,000 lines in a benchmark run: ~14 h).

    python benchmarks/readiness.py --workloads 6 --lines 100000 --repeats 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_mig.orchestration.process import Workload, child_env  # noqa: E402
from pytest_mig.types import LaunchSpec  # noqa: E402

READY = r"running actual test\.\s*$"
# The child writes K lines fast, then stamps the ready line with the time it writes it.
CHILD = ("import sys,time\nw=sys.stdout.write\nfor i in range({k}): w('noise line %d of the "
         "warm-up phase\\n' % i)\nsys.stdout.flush()\n"
         "print('%.9f Starting running actual test.' % time.time(), flush=True)\n"
         "time.sleep({hold})\n")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_ours(n: int, k: int, tmp: Path) -> tuple[list[float], float]:
    """Latencies (s) of n concurrent workloads and the CPU seconds our process spent."""
    cpu0 = time.process_time()
    ws = []
    for i in range(n):
        spec = LaunchSpec(argv=(sys.executable, "-c", CHILD.format(k=k, hold=0.5)),
                          env=child_env({}, "readiness-bench"), cwd=tmp, ready_pattern=READY,
                          log_path=tmp / f"w{i}.log", result_dir=tmp / f"w{i}")
        ws.append(Workload(f"w{i}", spec).start())
    lat = []
    for w in ws:
        assert w.wait_ready(600), f"{w.name} never ready"
        written = float(w.tail[-1].split()[0]) if w.tail else float("nan")
        lat.append(w.ready_at - written)
    for w in ws:
        w.wait(30)
    return lat, time.process_time() - cpu0


def run_sleeping(k: int, tmp: Path) -> float:
    """NVIDIA's pattern: read a line, check it, sleep 0.5 s; latency of one workload."""
    p = subprocess.Popen([sys.executable, "-c", CHILD.format(k=k, hold=0.5)],
                         stdout=subprocess.PIPE, text=True, cwd=tmp)
    assert p.stdout is not None
    while True:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("ended without ready line")
        if line.rstrip().endswith("running actual test."):
            latency = time.time() - float(line.split()[0])
            break
        time.sleep(0.5)
    p.wait()
    return latency


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=6)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sleeping-lines", type=int, nargs="+", default=[0, 4, 10])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lat: list[float] = []
        cpu: list[float] = []
        for r in range(a.repeats):
            l, c = run_ours(a.workloads, a.lines, tmp)
            lat += l
            cpu.append(c)
            print(f"repeat {r + 1}/{a.repeats}: max latency {max(l) * 1e3:.2f} ms, "
                  f"reader CPU {c:.2f} s", flush=True)
        sleeping = {k: run_sleeping(k, tmp) for k in a.sleeping_lines}
    per_line = max((sleeping[k] - sleeping[0]) / k for k in sleeping if k) if len(sleeping) > 1 else 0.5
    projected = sleeping.get(0, 0.0) + per_line * a.lines
    ours_p99 = percentile(lat, 99)
    out = {
        "workloads": a.workloads, "lines_before_ready": a.lines, "repeats": a.repeats,
        "samples": len(lat), "ours_p50_ms": percentile(lat, 50) * 1e3,
        "ours_p99_ms": ours_p99 * 1e3, "ours_max_ms": max(lat) * 1e3,
        "ours_reader_cpu_s_per_run": statistics.mean(cpu),
        "ours_reader_cpu_us_per_line": statistics.mean(cpu) / (a.workloads * a.lines) * 1e6,
        "sleeping_measured_s": {str(k): v for k, v in sleeping.items()},
        "sleeping_s_per_line": per_line,
        "sleeping_projected_s": projected,
        "ratio_sleeping_over_ours_p99": projected / ours_p99 if ours_p99 > 0 else None,
        "goal_p99_ms": 10.0, "goal_met": ours_p99 * 1e3 < 10.0,
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
