"""Soak: many consecutive smoke cases in ONE pytest session; nothing may accumulate.

A generated project runs N cases (4 benchmarks x 2 scenarios, repeated through a `rep`
parameter) on the simulated GPU. Workloads are tests/programs/fake_workload.py through
--harness=command (each case still starts its 3 backgrounds and its main as real processes,
reads their logs, samples the simulated GPU and writes every report), so 200 cases take
minutes, not hours of the built-in PyTorch harness. A conftest inside the session records
the pytest process's open file descriptors, Python and OS threads, child processes and RSS
before any plugin is configured (start), at session start, after case 1 and every 50 cases,
after the last case, and after every plugin is unconfigured (end: session backgrounds
stopped, reports written); start and end must be equal.

    python benchmarks/soak.py --cases 200 --json benchmarks/results/soak.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "programs" / "fake_workload.py"
BENCHMARKS = ("resnet50", "bert", "dlrm", "rnnt")
SCENARIOS = ("Offline", "Server")
COUNTERS = ("fds", "threads", "os_threads", "children")

SUITE = textwrap.dedent("""
    suite: soak
    class: datacenter
    benchmarks:
    {benchmarks}
    gpus:
      A100-SXM4-80GB: {{profiles: [1g.10gb], slots: 7}}
    modes: [performance]
    background:
      set: [bert, dlrm, rnnt]
      lifetime: {lifetime}
    run_profiles:
      smoke:
        min_duration_ms: 100
        min_query_count: 1
        start_time_buffer_s: 15
        end_time_buffer_min_s: 0.1
        background_min_duration_ms: auto
        sample_count: 16
    default_run_profile: smoke
""")

TEST = textwrap.dedent("""
    import pytest

    @pytest.mark.parametrize("rep", range({reps}))
    def test_soak(mig_case, hetero, rep):
        outcome = hetero.run(mig_case)
        assert outcome.valid, outcome.why_invalid()
        assert outcome.background_healthy, outcome.why_unhealthy()
""")

# Measures the pytest process from inside: the numbers that grow when something leaks.
CONFTEST = textwrap.dedent("""
    import json, os, resource, threading, time
    from pathlib import Path

    import pytest

    OUT = Path({out!r})
    EVERY = 50
    CASES = {cases}
    samples = []
    done = 0


    def children():
        me, found = os.getpid(), 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{{entry}}/stat").read_text()
                except OSError:
                    continue
                found += int(stat.rsplit(")", 1)[-1].split()[1]) == me
        return found


    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0


    def snapshot(label):
        samples.append({{"label": label, "cases_done": done, "t": round(time.time(), 3),
                         "fds": len(os.listdir("/proc/self/fd")),
                         "threads": threading.active_count(), "os_threads": status("Threads"),
                         "children": children(), "rss_mib": round(status("VmRSS") / 1024, 1),
                         "fd_targets": sorted(os.readlink(f"/proc/self/fd/{{fd}}") for fd in
                                              os.listdir("/proc/self/fd")
                                              if os.path.exists(f"/proc/self/fd/{{fd}}"))}})


    def pytest_collection_modifyitems(items):
        del items[CASES:]


    # start/end bracket every plugin's configure/unconfigure: pytest's own descriptors
    # (faulthandler's stderr copy, ...) are closed again by then, so equal means no leak.
    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(config):
        snapshot("start")


    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(session):
        snapshot("session start")


    def pytest_runtest_logfinish(nodeid, location):
        global done
        done += 1
        if done == 1 or done % EVERY == 0:
            snapshot(f"after case {{done}}")


    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(session):
        snapshot("after the last case")


    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(config):
        snapshot("end")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        OUT.write_text(json.dumps({{"samples": samples, "peak_rss_mib": round(peak, 1)}}))
""")


def make_project(root: Path, cases: int, lifetime: str, samples: Path) -> list[str]:
    """Write the project; the pytest command line that runs it."""
    reps = math.ceil(cases / (len(BENCHMARKS) * len(SCENARIOS)))
    benches = "\n".join(f"  {b}: {{scenarios: [{', '.join(SCENARIOS)}], accuracy: 0.99}}"
                        for b in BENCHMARKS)
    (root / "suites").mkdir(parents=True)
    (root / "suites" / "suite.yaml").write_text(SUITE.format(benchmarks=benches,
                                                             lifetime=lifetime))
    (root / "suites" / "test_soak.py").write_text(TEST.format(reps=reps))
    (root / "conftest.py").write_text(CONFTEST.format(out=str(samples), cases=cases))
    (root / "script.json").write_text("{}")
    command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --script "
               f"{root / 'script.json'} --role {{role}} --name {{name}} --log-dir {{log_dir}} "
               "--min-duration-ms {min_duration_ms}")
    return [sys.executable, "-m", "pytest", "suites", "--mig-backend=simulated",
            "--harness=command", f"--mig-command={command}", "--mig-main-startup=2",
            "-p", "no:cacheprovider", "-q"]


def rss_growth(samples: list[dict]) -> float | None:
    """RSS growth per case in steady state (from case 50 to the last), in KiB."""
    steady = [s for s in samples if s["label"].startswith("after case") and s["cases_done"] >= 50]
    if len(steady) < 2 or steady[-1]["cases_done"] == steady[0]["cases_done"]:
        return None
    grew = (steady[-1]["rss_mib"] - steady[0]["rss_mib"]) * 1024
    return round(grew / (steady[-1]["cases_done"] - steady[0]["cases_done"]), 1)


def soak(cases: int, lifetime: str, keep: Path | None) -> dict:
    root = keep or Path(tempfile.mkdtemp(prefix=f"pytest-mig-soak-{lifetime}-"))
    samples_path = root / "soak-samples.json"
    argv = make_project(root, cases, lifetime, samples_path)
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    wall = time.monotonic() - t0
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if not samples_path.exists():
        raise SystemExit(f"pytest wrote no samples (exit {proc.returncode}):\n"
                         f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(samples_path.read_text())
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    start, end = data["samples"][0], data["samples"][-1]
    leaked_fds = sorted(set(end["fd_targets"]) - set(start["fd_targets"]))
    for s in data["samples"]:
        s.pop("fd_targets")
    return {
        "background_lifetime": lifetime,
        "cases": cases,
        "pytest_exit_code": proc.returncode,
        "pytest_summary": summary,
        "wall_s": round(wall, 1),
        "s_per_case": round(wall / cases, 2),
        "workload_processes_started": cases + (3 * cases if lifetime == "per-test" else 3),
        "start": {k: start[k] for k in (*COUNTERS, "rss_mib")},
        "end": {k: end[k] for k in (*COUNTERS, "rss_mib")},
        "equal": all(start[k] == end[k] for k in COUNTERS),
        "fds_open_at_end_not_at_start": leaked_fds,
        "peak_rss_mib": data["peak_rss_mib"],
        "rss_growth_kib_per_case": rss_growth(data["samples"]),
        "samples": data["samples"],
        "project": str(root) if keep else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--lifetime", choices=("per-test", "session", "both"), default="both")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--keep", type=Path, default=None, help="project folder (kept)")
    a = ap.parse_args()
    lifetimes = ("per-test", "session") if a.lifetime == "both" else (a.lifetime,)
    runs = []
    for lifetime in lifetimes:
        keep = a.keep / lifetime if a.keep else None
        run = soak(a.cases, lifetime, keep)
        runs.append(run)
        print(f"{lifetime}: {run['pytest_summary']} in {run['wall_s']} s; start {run['start']} "
              f"end {run['end']}; equal={run['equal']}; peak RSS {run['peak_rss_mib']} MiB")
    result = {
        "benchmark": "soak: consecutive smoke cases in one pytest session",
        "harness": "command (tests/programs/fake_workload.py), simulated NVML (A100-SXM4-80GB, "
                   "default layout 7 x 1g.10gb), GPU telemetry sampling on (0.2 s)",
        "measured": "inside the pytest process: /proc/self/fd entries, threading.active_count(), "
                    "Threads from /proc/self/status, processes whose parent is pytest, VmRSS; "
                    "peak RSS = getrusage ru_maxrss",
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "all_equal": all(r["equal"] for r in runs),
    }
    if a.json:
        for r in runs:
            r.pop("project")
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["all_equal"] and all(r["pytest_exit_code"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
