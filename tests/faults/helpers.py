"""Shared pieces of the fault matrix: the two-case fault suite's project (tests/conftest.py's
kit), its case names, and the checks every fault ends with (no process left, leases free, GPU
as found, logs kept)."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

# The faulty case comes first (resnet50), a healthy one after it (bert) in the same session.
FAULTY = "resnet50-Offline-1g.10gb-performance"
HEALTHY = "bert-Offline-1g.10gb-performance"
FAULTY_DIR = f"test_hetero_{FAULTY}"
HEALTHY_DIR = f"test_hetero_{HEALTHY}"
BGS = ("bg1-bert", "bg2-dlrm", "bg3-rnnt")  # the background workloads of every case

# The fault runs' flags: a short allowance for the main's start, a lease wait bounded at 20 s.
FLAGS = ("--mig-main-startup=1.5", "--mig-lease-timeout=20", "-rA")


def fault_project(mini_project):
    """The fault suite's project (tests/conftest.py's kit on tests/data/suites/faults.yaml)."""
    return mini_project("faults", flags=FLAGS)


def assert_clean(project, run_dir: Path | None = None) -> None:
    """Nothing of the run remains: no process, no held lease, the GPU as the run found it."""
    assert project.wait_no_leftovers() == []
    run_dir = run_dir or project.run_dir()
    assert_leases_free(run_dir)
    assert_gpu_as_found(run_dir)


def assert_leases_free(run_dir: Path) -> None:
    locks = sorted((run_dir / "locks").glob("gpu-*.lock"))
    assert locks, f"no lease lock files under {run_dir}/locks"
    for lock in locks:
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AssertionError(f"{lock} is still held ({lock.read_text().strip()})")
            fcntl.flock(fh, fcntl.LOCK_UN)


def gpu_state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "simulated-gpu.json").read_text())


def assert_gpu_as_found(run_dir: Path) -> None:
    """The simulated default: 7 x 1g.10gb made by the simulator, none by the run."""
    (gpu,) = gpu_state(run_dir)["gpus"]
    assert sorted((gi["profile_id"], gi["start"], len(gi["compute_instances"]))
                  for gi in gpu["gpu_instances"]) == [(19, s, 1) for s in range(7)]
    own = run_dir / "mig-ownership.json"
    assert not own.exists() or json.loads(own.read_text())["instances"] == []


def assert_logs_kept(run_dir: Path, test_dir: str, names: tuple[str, ...]) -> None:
    """The case's progress log and the logs of each named workload are in reports/."""
    d = run_dir / test_dir
    assert (d / "progress.log").read_text(), f"no progress.log in {d}"
    for name in names:
        log = d / f"{name}.log"
        assert log.exists() and "[fake] warming up 0" in log.read_text(), f"{log} missing/empty"


def case_dirs(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("test_"))
