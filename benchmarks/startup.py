"""Start-up cost of the plugin: `pytest --collect-only` of the 36-case datacenter suite with
pytest-mig against the same command with the plugin disabled (`-p no:mig`: bare pytest
collecting the same module), in alternation, many repeats, medians and the paired difference.

Both commands run in the same environment (same pytest, same other plugins), so the difference
is what pytest-mig adds: its import, options, configure, the suite and catalogue, the GPU model
choice and the 36 parametrized cases. CPU time (user + sys of the child, from the kernel's
accounting) is reported beside wall time: on a shared machine it is the steadier figure.

    python benchmarks/startup.py --repeats 30 --json benchmarks/results/startup.json

The JSON names the commit measured (of the checkout this script sits in) and, with --note,
the conditions (machine load, priority). To measure another commit the same way, run the
script of a checkout of it with PYTHONPATH pointing at that checkout (the plugin is then
imported from there, not from the installed copy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = "suites/datacenter"
GOAL_S = 0.3  # pytest-mig's configure + collection within this of bare pytest's


def command(with_plugin: bool, quiet: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", SUITE]
    if quiet:
        cmd.append("-q")
    if not with_plugin:
        cmd[3:3] = ["-p", "no:mig"]
    return cmd


# Bytecode caching as a user has it (pip compiles .pyc at install; an editable install writes
# them at the first import): with PYTHONDONTWRITEBYTECODE set (some sandboxes set it), every
# run compiles every module from source, and pytest rewrites the asserts of every module of a
# pytest11 plugin again: a cost an installed copy does not pay. The warm-up run writes the
# caches; --compile-each-run measures the uncached case instead: PYTHONDONTWRITEBYTECODE=1 and
# the plugin's __pycache__ folders removed before each run (site-packages keep their .pyc, as
# in a sandbox that sets the variable over an editable checkout).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def drop_plugin_bytecode() -> None:
    for folder in sorted((ROOT / "pytest_mig").rglob("__pycache__")):
        shutil.rmtree(folder, ignore_errors=True)


def timed(cmd: list[str], expect: str) -> tuple[float, float]:
    """(wall s, child CPU s) of one run; the run must collect what it should."""
    if ENV.get("PYTHONDONTWRITEBYTECODE"):
        drop_plugin_bytecode()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0 or expect not in res.stdout:
        raise SystemExit(f"startup.py: {' '.join(cmd)} failed (exit {res.returncode}, "
                         f"wanted {expect!r}):\n{res.stdout[-800:]}{res.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def commit() -> str:
    """The commit of the checkout measured, or 'unknown' (no git, not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "system": platform.platform(), "python": platform.python_version(),
            "load_1min_at_start": load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="runs of each command (alternating)")
    ap.add_argument("--verbose-header", action="store_true",
                    help="default verbosity (run header shown: the GPU backend is opened) "
                         "instead of -q")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--note", default="", help="conditions of the measurement, kept in the JSON")
    ap.add_argument("--compile-each-run", action="store_true",
                    help="set PYTHONDONTWRITEBYTECODE=1 for the runs: no bytecode cache, every "
                         "module compiled (and pytest's assert rewriting redone) on each run")
    a = ap.parse_args()
    quiet = not a.verbose_header
    if a.compile_each_run:
        ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    mig, bare = command(True, quiet), command(False, quiet)
    for cmd, expect in ((mig, "36 tests collected"), (bare, "1 test collected")):
        timed(cmd, expect)  # warm-up: page cache, .pyc files
    rows: dict[str, list[tuple[float, float]]] = {"mig": [], "bare": []}
    for _ in range(a.repeats):
        rows["mig"].append(timed(mig, "36 tests collected"))
        rows["bare"].append(timed(bare, "1 test collected"))
    pairs_wall = [m[0] - b[0] for m, b in zip(rows["mig"], rows["bare"])]
    pairs_cpu = [m[1] - b[1] for m, b in zip(rows["mig"], rows["bare"])]
    med = {k: {"wall_s": statistics.median(r[0] for r in v),
               "cpu_s": statistics.median(r[1] for r in v)} for k, v in rows.items()}
    out = {
        "machine": machine(), "commit": commit(), "repeats": a.repeats, "header": not quiet,
        "bytecode_cache": ("off for the plugin (PYTHONDONTWRITEBYTECODE=1, its __pycache__ "
                           "removed before each run: every run compiles it)"
                           if a.compile_each_run else
                           "on (PYTHONDONTWRITEBYTECODE unset for the runs; the warm-up writes it)"),
        "commands": {"mig": " ".join(mig[1:]), "bare": " ".join(bare[1:])},
        "median": med,
        "added_by_pytest_mig": {"wall_s_median_of_pairs": statistics.median(pairs_wall),
                                "cpu_s_median_of_pairs": statistics.median(pairs_cpu),
                                "wall_ratio_mig_over_bare": med["mig"]["wall_s"] / med["bare"]["wall_s"]},
        "goal_s": GOAL_S,
        "goal_met": statistics.median(pairs_wall) <= GOAL_S,
        **({"conditions": a.note} if a.note else {}),
    }
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
