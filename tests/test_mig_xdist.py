"""GPU leases across pytest-xdist workers (pytester, simulated GPUs): cases running at the
same time never share a MIG instance or a GPU; with more workers than GPUs they wait, and
a wait past --mig-lease-timeout fails with a clear message."""
from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
from itertools import combinations
from pathlib import Path


# Runs the fake workload and records which MIG device it was given, and when.
WRAP = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    usage_dir, log_dir, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    start = time.time()
    child = subprocess.Popen(argv)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    code = child.wait()
    record = {"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "log_dir": log_dir,
              "start": start, "end": time.time()}
    with open(os.path.join(usage_dir, f"{os.getpid()}.json"), "w") as fh:
        json.dump(record, fh)
    sys.exit(code)
""")


def leases(mini_project, duration_ms: int):
    """The leases suite with mains of `duration_ms`; every workload wrapped to record its use."""
    project = mini_project("leases", flags=("--mig-main-startup=2", "-v"))
    project.edit_suite("min_duration_ms: 1000", f"min_duration_ms: {duration_ms}")
    wrap = project.path / "wrap.py"
    wrap.write_text(WRAP)
    usage = project.pytester.mkdir("usage")
    py = shlex.quote(sys.executable)
    project.command = f"{py} {wrap} {usage} {{log_dir}} {project.fake_command()}"
    return project


def usage(project) -> list[dict]:
    """One record per workload process: device, case directory, [start, end]."""
    run_dir = project.run_dir()
    state = project.gpu_state()
    gpu_of = {ci["uuid"]: gpu["index"] for gpu in state["gpus"]
              for gi in gpu["gpu_instances"] for ci in gi["compute_instances"]}
    out = []
    for f in sorted((project.path / "usage").glob("*.json")):
        rec = json.loads(f.read_text())
        rec["case"] = Path(rec["log_dir"]).relative_to(run_dir).parts[0]
        rec["gpu"] = gpu_of[rec["device"]]
        out.append(rec)
    return out


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def cases(records: list[dict]) -> dict[str, dict]:
    """Per case: its GPU (one for all its workloads) and the span its workloads ran."""
    out: dict[str, dict] = {}
    for r in records:
        c = out.setdefault(r["case"], {"gpus": set(), "span": (r["start"], r["end"])})
        c["gpus"].add(r["gpu"])
        c["span"] = (min(c["span"][0], r["start"]), max(c["span"][1], r["end"]))
    return out


def workers(stdout: str) -> dict[str, str]:
    """case id -> xdist worker, from -v lines such as '[gw1] [ 12%] PASSED ...[case]'."""
    found = re.findall(r"\[(gw\d+)\] \[\s*\d+%\] \w+ \S+::test_hetero\[([^\]]+)\]", stdout)
    return {case: worker for worker, case in found}


def max_concurrency(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    level = best = 0
    for _, step in events:
        level += step
        best = max(best, level)
    return best


def test_four_workers_on_a_simulated_dgx_a100_never_share_an_instance(mini_project):
    project = leases(mini_project, 1000)
    r = project.run({}, "--mig-sim-gpus=8", "-n", "4")
    r.assert_outcomes(passed=8)
    records = usage(project)
    assert len(records) == 8 * 3  # main + 2 backgrounds per case
    # No MIG instance ever had two workloads at once.
    by_device: dict[str, list[dict]] = {}
    for rec in records:
        by_device.setdefault(rec["device"], []).append(rec)
    for device, recs in by_device.items():
        for a, b in combinations(recs, 2):
            assert not overlap((a["start"], a["end"]), (b["start"], b["end"])), device
    # A case stays on one GPU; cases running at the same time are on different GPUs.
    per_case = cases(records)
    assert len(per_case) == 8 and all(len(c["gpus"]) == 1 for c in per_case.values())
    for (na, a), (nb, b) in combinations(per_case.items(), 2):
        if overlap(a["span"], b["span"]):
            assert a["gpus"] != b["gpus"], (na, nb)
    # All four workers ran cases, at the same time, each on a GPU of its own.
    ran_by = workers(r.stdout.str())
    assert sorted(set(ran_by.values())) == ["gw0", "gw1", "gw2", "gw3"]
    firsts = {}
    for case_dir, c in sorted(per_case.items(), key=lambda kv: kv[1]["span"][0]):
        worker = next(w for cid, w in ran_by.items() if cid in case_dir)
        firsts.setdefault(worker, c)
    assert len(firsts) == 4
    assert len({next(iter(c["gpus"])) for c in firsts.values()}) == 4
    assert max_concurrency([c["span"] for c in per_case.values()]) >= 2


def test_more_workers_than_gpus_wait_for_the_lease(mini_project):
    project = leases(mini_project, 1000)
    r = project.run({}, "--mig-sim-gpus=1", "-n", "2", "--mig-lease-timeout=60", "-k", "resnet50")
    r.assert_outcomes(passed=2)
    assert sorted(workers(r.stdout.str()).values()) == ["gw0", "gw1"]
    (a, b) = sorted(cases(usage(project)).values(), key=lambda c: c["span"][0])
    assert a["gpus"] == b["gpus"] == {0}
    assert a["span"][1] <= b["span"][0]  # the second case waited for the first to finish


def test_lease_wait_past_the_timeout_fails_with_the_reason(mini_project):
    project = leases(mini_project, 4000)
    r = project.run({}, "--mig-sim-gpus=1", "-n", "2", "--mig-lease-timeout=0.5", "-k", "resnet50")
    r.assert_outcomes(passed=1, errors=1)
    r.stdout.fnmatch_lines([
        "*LeaseTimeout: no GPU free after 0.5 s: all 1 GPU(s) are leased by other pytest-mig "
        "workers or runs (locks in */locks). Use fewer xdist workers (-n 1) or raise "
        "--mig-lease-timeout."])
