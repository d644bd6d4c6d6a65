"""Interference per benchmark over repeated sweeps: mean and spread, isolation checked.

Reads results.json files of `pytest ... --mig-isolated-baseline` runs (one per repeat) and
prints a markdown table: isolated and hetero samples/s (mean), interference = 1 - hetero /
isolated per repeat (mean, min, max, n), and how each baseline was isolated (verified by
NVML's process list on real GPUs). A case that failed, was INVALID, or whose baseline was
not verified as alone is listed apart and not averaged.

    python benchmarks/interference_table.py reports/sweep-*/*/results.json
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def others(isolation: dict) -> list[str]:
    """Processes NVML saw during the baseline that are neither the main's nor an MPS server,
    recomputed from the raw observations (so a record is judged by today's rule)."""
    from pytest_mig.orchestration.hetero_run import is_mps_server
    mine = set(isolation.get("main_pids", []))
    return [f"{pid} ({name})" for pid, name in (isolation.get("gpu_processes_seen") or {}).items()
            if int(pid) not in mine and not is_mps_server(name)]


def rows(paths: list[Path]) -> tuple[dict, list[str]]:
    per: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    skipped = []
    for path in paths:
        for rec in json.loads(path.read_text())["tests"]:
            iso, res = rec.get("isolated") or {}, rec.get("result") or {}
            how = iso.get("isolation") or {}
            why = ("not passed" if rec.get("outcome") != "passed"
                   else "INVALID" if not (res.get("valid") and iso.get("valid"))
                   else "baseline not alone: " + ", ".join(others(how)) if others(how)
                   else "")
            if why or not iso.get("value") or not res.get("value"):
                skipped.append(f"{path.name}: {rec['case']}: {why or 'no value'}")
                continue
            per[rec["benchmark"]].append((iso["value"], res["value"],
                                          1 - res["value"] / iso["value"]))
    return per, skipped


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv]
    per, skipped = rows(paths)
    print(f"{len(paths)} run(s): {', '.join(p.name for p in paths)}\n")
    print("| benchmark | n | isolated samples/s (mean) | hetero samples/s (mean) "
          "| interference mean | min | max |")
    print("|---|---|---|---|---|---|---|")
    for bench in sorted(per):
        iso, het, itf = zip(*per[bench])
        print(f"| {bench} | {len(itf)} | {statistics.mean(iso):,.4g} | {statistics.mean(het):,.4g} "
              f"| {statistics.mean(itf):.1%} | {min(itf):.1%} | {max(itf):.1%} |")
    for line in skipped:
        print(f"\nnot averaged: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
