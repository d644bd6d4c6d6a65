"""Where the README's main job spends its time: per phase and per process.

Runs `pytest suites/datacenter -k ssd -v` (or other pytest arguments) as a child and, while it
runs, samples every process it started (/proc: CPU seconds, nice value) twice a second. At the
end it reads each case's record (phases) and each workload's log (its own phase line:
imports, build, calibration, LoadGen test, accuracy scoring) and writes one JSON profile:

- wall time of the whole run and of each case (backgrounds ready -> main end);
- for each main: its phases from its log; for each background: CPU seconds used during the run;
- CPU seconds by role (pytest itself, mains, backgrounds) and the machine's load average, so a
  run on a shared machine can be read for what it is;
- plans against what happened: each main's and each per-test background's own plan (written by
  the child at its ready line: ready_s + planned LoadGen test + planned scoring) beside its launch
  to exit time, and the precision each main ran (`precision=auto`: the CPU's native one).

    python benchmarks/first_run_profile.py --json benchmarks/results/first_run_profile.json
    python benchmarks/first_run_profile.py -- suites/datacenter -k "ssd and Offline" -v

`--boost N` (root only) sets the autogroup nice of pytest and of every workload to -N as each
appears: on a shared host it gives the run the cores ahead of other tenants, standing in for
a dedicated machine; relative priorities inside the run stay as they are. The profile says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARGS = ["suites/datacenter", "-k", "ssd", "-v"]
TICK = os.sysconf("SC_CLK_TCK")
PHASES_RE = re.compile(r"\[pytest-mig loadgen\] phases: (.*)$", re.M)
IMPORTS_RE = re.compile(r"\[pytest-mig loadgen\] imports ([0-9.]+)s", re.M)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, nice) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[16])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


class Sampler(threading.Thread):
    """Twice a second: every direct child of pytest (the workloads) with its CPU seconds."""

    def __init__(self, pid: int, interval: float = 0.5, boost: int = 0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.boost = pid, interval, boost
        self.seen: dict[int, dict] = {}
        self.done = threading.Event()
        self.load: list[float] = []

    def _boost(self, pid: int) -> None:
        if self.boost:
            try:
                Path(f"/proc/{pid}/autogroup").write_text(str(-self.boost))
            except OSError:
                pass

    def run(self) -> None:
        t0 = time.time()
        self._boost(self.pid)
        while not self.done.is_set():
            for child in _children(self.pid):
                st = _stat(child)
                if st is None:
                    continue
                entry = self.seen.get(child)
                if entry is None:
                    self._boost(child)
                    argv = _cmdline(child)
                    entry = self.seen[child] = {
                        "pid": child, "argv": argv, "first_seen_s": round(time.time() - t0, 2),
                        "role": "background" if ("--until-stopped" in argv or "--cpu-priority" in argv
                                             or "--cpu-duty" in argv) else "main"}
                    if "--benchmark" in argv:
                        entry["benchmark"] = argv[argv.index("--benchmark") + 1]
                    if "--log-dir" in argv:
                        entry["log_dir"] = argv[argv.index("--log-dir") + 1]
                entry["cpu_s"], entry["nice"] = st
                entry["last_seen_s"] = round(time.time() - t0, 2)
            self.load.append(os.getloadavg()[0])
            self.done.wait(self.interval)


def _log_phases(log_dir: str | None) -> dict[str, float]:
    if not log_dir:
        return {}
    log = Path(log_dir).with_suffix(".log")
    if not log.exists():
        log = Path(log_dir).parent / "main.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, float] = {}
    m = IMPORTS_RE.search(text)
    if m:
        out["imports"] = float(m.group(1))
    m = PHASES_RE.search(text)
    if m:
        for part in m.group(1).split(", "):
            name, _, secs = part.partition(" ")
            out[name] = float(secs.rstrip("s"))
    return out


def _record(log_dir: str | None) -> dict:
    """The child's PATH_RECORD (harness_path.json: precision, plan, what the phases took)."""
    try:
        return json.loads((Path(log_dir) / "harness_path.json").read_text()) if log_dir else {}
    except (OSError, ValueError):
        return {}


def _planned(record: dict) -> float | None:
    try:
        return (float(record["ready_s"]) + float(record["planned_test_s"])
                + float(record.get("planned_accuracy_s") or 0.0))
    except (KeyError, TypeError, ValueError):
        return None


def _off(actual: float | None, planned: float | None) -> float | None:
    """actual / planned - 1 (0.2: 20 % longer than planned)."""
    return round(actual / planned - 1.0, 3) if actual and planned else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the profile here")
    ap.add_argument("--boost", type=int, default=0, metavar="N",
                    help="root: autogroup nice -N for the run's processes (a dedicated machine "
                         "on a shared host)")
    ap.add_argument("--reports", type=Path, default=ROOT / "reports" / "first-run-profile")
    ap.add_argument("pytest_args", nargs="*", default=DEFAULT_ARGS)
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "pytest", *(a.pytest_args or DEFAULT_ARGS), "-p", "no:cacheprovider",
           f"--mig-reports={a.reports}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid, interval=0.25 if a.boost else 0.5, boost=a.boost)
    sampler.start()
    output = proc.stdout.read() if proc.stdout else ""
    code = proc.wait()
    wall = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = sorted(a.reports.glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    results = json.loads(runs[-1].read_text()) if runs else {}
    cases = []
    for t in results.get("tests", []):
        ph = t.get("phases") or {}
        start = ph.get("backgrounds_ready") or ph.get("main_start")
        record = (t.get("result") or {}).get("harness_path") or {}
        main_s = round(ph["main_end"] - ph["main_start"], 2) if ph.get("main_start") and ph.get("main_end") else None
        planned = _planned(record)
        cases.append({"case": t.get("case"),
                      "outcome": t.get("outcome"),
                      "case_s": round(ph["main_end"] - start, 2) if start and ph.get("main_end") else None,
                      "wait_for_backgrounds_s": round(ph["backgrounds_ready"] - ph["backgrounds_started"], 2)
                      if ph.get("backgrounds_started") and ph.get("backgrounds_ready") else 0.0,
                      "precision": record.get("precision"),
                      "main_s": main_s, "main_planned_s": round(planned, 2) if planned else None,
                      "main_off_plan": _off(main_s, planned),
                      "test_s": record.get("test_s"), "test_planned_s": record.get("planned_test_s"),
                      "test_off_plan": _off(record.get("test_s"), record.get("planned_test_s"))})
    procs = []
    for p in sampler.seen.values():
        entry = {k: p.get(k) for k in ("role", "benchmark", "nice", "cpu_s", "first_seen_s",
                                        "last_seen_s")} | {"phases": _log_phases(p.get("log_dir"))}
        if p["role"] == "background" and "--until-stopped" not in p.get("argv", []):  # per-test
            record = _record(p.get("log_dir"))
            planned = _planned(record)
            seen = (p["last_seen_s"] - p["first_seen_s"]) if p.get("last_seen_s") is not None else None
            entry.update(per_test=True, run_s_sampled=round(seen, 2) if seen is not None else None,
                         run_planned_s=round(planned, 2) if planned else None,
                         run_off_plan=_off(seen, planned), test_s=record.get("test_s"),
                         test_planned_s=record.get("planned_test_s"),
                         test_off_plan=_off(record.get("test_s"), record.get("planned_test_s")))
        procs.append(entry)
    by_role: dict[str, float] = {}
    for p in procs:
        by_role[p["role"]] = round(by_role.get(p["role"], 0.0) + (p["cpu_s"] or 0.0), 2)
    by_role["pytest (plugin, readers)"] = round(total_cpu - sum(by_role.values()), 2)
    main_phase_sums: dict[str, float] = {}
    for p in procs:
        if p["role"] == "main":
            for k, v in p["phases"].items():
                main_phase_sums[k] = round(main_phase_sums.get(k, 0.0) + v, 2)
    tail = [line for line in output.splitlines() if line.startswith(("=", "pytest-mig:"))][-4:]
    header = [line for line in output.splitlines() if line.startswith("pytest-mig: CPU precision")][:1]
    per_test = [p for p in procs if p.get("per_test")]
    worst = {"mains_main_s": max((abs(c["main_off_plan"]) for c in cases if c["main_off_plan"] is not None),
                                 default=None),
             "mains_test_s": max((abs(c["test_off_plan"]) for c in cases if c["test_off_plan"] is not None),
                                 default=None),
             "per_test_backgrounds_run_s": max((abs(p["run_off_plan"]) for p in per_test
                                                if p["run_off_plan"] is not None), default=None)}
    out = {
        "command": " ".join(["pytest", *cmd[3:]]),
        "exit_code": code, "wall_s": round(wall, 1), "cpu_s_all_processes": round(total_cpu, 1),
        "summary": tail,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "autogroup_boost": -a.boost if a.boost else None,
                    "load_avg_1min_median": sorted(sampler.load)[len(sampler.load) // 2] if sampler.load else None,
                    "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                 if ln.startswith("model name")), platform.processor())},
        "cpu_precision_header": header[0] if header else None,
        "largest_off_plan": worst,
        "cpu_s_by_role": by_role,
        "main_phase_seconds_summed": main_phase_sums,
        "cases": cases,
        "processes": procs,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "processes"}, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
