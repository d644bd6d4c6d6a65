"""Big suites: collection time of a generated 10,000-case suite, and per-case plugin overhead.

Collection: suites are generated (7 benchmarks x scenarios x 6 MIG profiles x 2 modes each,
repeated over enough suite folders) and `pytest --collect-only -q` is timed as a whole.
Overhead: N cases run with a workload that is instantly ready and instantly done, and the
time the plugin spends outside waiting on workloads is the test's wall time minus the spans
the workloads ran (taken from each record's phases).

    python benchmarks/suite_scale.py --cases 10000 --run-cases 20 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
SUITE = textwrap.dedent("""
    suite: gen{n}
    class: datacenter
    benchmarks:
      resnet50: {{scenarios: [Offline, SingleStream, Server]}}
      ssd-resnet34: {{scenarios: [Offline, SingleStream, Server]}}
      ssd-mobilenet: {{scenarios: [Offline, SingleStream]}}
      bert: {{scenarios: [Offline, SingleStream, Server]}}
      rnnt: {{scenarios: [Offline, SingleStream, Server]}}
      dlrm: {{scenarios: [Offline, Server]}}
      3d-unet: {{scenarios: [Offline, SingleStream]}}
    gpus:
      A100-SXM4-80GB: {{profiles: [{profiles}], slots: 7}}
    modes: [performance, accuracy]
    background: {{set: datacenter, lifetime: per-test}}
    run_profiles:
      smoke: {{min_duration_ms: 50, min_query_count: 1, start_time_buffer_s: 30,
              end_time_buffer_min_s: 0.0, background_min_duration_ms: 200, sample_count: 8}}
    default_run_profile: smoke
""")
TEST = ("def test_hetero(mig_case, hetero):\n"
        "    outcome = hetero.run(mig_case)\n"
        "    assert outcome.background_healthy, outcome.why_unhealthy()\n")
# Instantly ready, instantly done: prints the ready line and writes a VALID summary.
INSTANT = ROOT / "tests" / "programs" / "fake_workload.py"


def generate(root: Path, cases: int) -> int:
    per_suite = 18 * len(PROFILES) * 2
    n_suites = -(-cases // per_suite)
    for n in range(n_suites):
        d = root / "suites" / f"gen{n}"
        d.mkdir(parents=True)
        (d / "suite.yaml").write_text(SUITE.format(n=n, profiles=", ".join(PROFILES)))
        (d / f"test_gen{n}.py").write_text(TEST)
    return n_suites * per_suite


# As users run it: bytecode caches on (some sandboxes set PYTHONDONTWRITEBYTECODE, which
# makes pytest re-rewrite and recompile every plugin module on every start).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_collection(root: Path, repeats: int) -> tuple[list[float], str]:
    times, last = [], ""
    subprocess.run([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q",
                    "--mig-backend=simulated", "-p", "no:cacheprovider"], cwd=root, env=ENV,
                   capture_output=True)  # warm-up: fills the bytecode caches once
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q",
                              "--mig-backend=simulated", "-p", "no:cacheprovider"],
                             cwd=root, env=ENV, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:]
    return times, last


def time_overhead(root: Path) -> dict:
    script = root / "script.json"
    script.write_text("{}")
    cmd = (f"{sys.executable} {INSTANT} --script {script} --role {{role}} --name {{name}} "
           "--log-dir {log_dir} --min-duration-ms {min_duration_ms} --noise-lines 0")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "suites/gen0", "--mig-backend=simulated",
                          "--harness=command", f"--mig-command={cmd}", "-p", "no:cacheprovider",
                          "-q", "--mig-sample-interval=0",
                          "-k", "1g.10gb and performance",
                          "--durations=0", "--durations-min=0"],
                         cwd=root, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (run_dir,) = [p for p in (root / "reports").iterdir() if (p / "results.json").exists()]
    recs = json.loads((run_dir / "results.json").read_text())["tests"]
    durations = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("s") and parts[1] in ("call", "setup", "teardown"):
            durations.setdefault(parts[2], 0.0)
            durations[parts[2]] += float(parts[0][:-1])
    overheads = []
    for rec in recs:
        ph = rec["phases"]
        waited = ((ph.get("backgrounds_ready", 0) - ph.get("backgrounds_started", 0))
                  + (ph.get("main_end", 0) - ph.get("main_start", 0)))
        bg_end = max((h["ended_at"] or 0) for h in rec["health"]) if rec["health"] else 0
        waited += max(0.0, bg_end - ph.get("main_end", 0))
        total = durations.get(rec["nodeid"], 0.0)
        overheads.append(total - waited)
    return {"cases_run": len(recs), "outcomes": sorted({r["outcome"] for r in recs}),
            "session_wall_s": wall, "per_case_overhead_s_median": statistics.median(overheads),
            "per_case_overhead_s_max": max(overheads), "tail": res.stdout.strip().splitlines()[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "conftest.py").write_text("")
        generated = generate(root, a.cases)
        times, tail = time_collection(root, a.repeats)
        overhead = time_overhead(root)
    out = {"generated_cases": generated, "collect_wall_s": times,
           "collect_wall_s_min": min(times), "collect_tail": tail,
           "goal_collect_s": 2.0, "collect_goal_met": min(times) < 2.0,
           "overhead": overhead, "goal_overhead_s": 0.2,
           "overhead_goal_met": overhead["per_case_overhead_s_median"] < 0.2,
           "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
