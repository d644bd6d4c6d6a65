"""The markers behind orphan reaping: every workload names its run and the pytest process
that spawned it, so a dead spawner's workloads (a killed xdist worker's) are found while the
run goes on, and a dead run's are found by the next run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


from pytest_mig.orchestration.process import (KEY_MARKER, RUN_MARKER, SPAWNER_MARKER,
                                              WORKLOAD_MARKER, Workload, child_env, markers_of,
                                              reap_orphans, use_run_key)
from pytest_mig.run.settings import Settings
from pytest_mig.run.state import MigSession
from pytest_mig.types import LaunchSpec

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


KEY = "k" * 32


def sleeper(run: str, spawner: int, key: str = KEY) -> subprocess.Popen:
    env = {**child_env({}, run), SPAWNER_MARKER: str(spawner), KEY_MARKER: key}
    return subprocess.Popen(SLEEP, env=env, start_new_session=True)


def wait_marked(pid: int) -> None:
    deadline = time.monotonic() + 10
    while RUN_MARKER not in markers_of(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_workloads_carry_run_and_spawner_markers(tmp_path):
    spec = LaunchSpec(argv=tuple(SLEEP), env=child_env({}, "run-x"), cwd=tmp_path,
                      ready_pattern="never", log_path=tmp_path / "w.log",
                      result_dir=tmp_path / "w")
    use_run_key(KEY)
    w = Workload("w", spec).start()
    try:
        wait_marked(w.pid)
        assert markers_of(w.pid) == {RUN_MARKER: "run-x", SPAWNER_MARKER: str(os.getpid()),
                                     KEY_MARKER: KEY, WORKLOAD_MARKER: w.marker}
        assert w.marker.endswith(":w")
        assert SPAWNER_MARKER not in spec.env  # added at spawn time, not in the planned env
        assert KEY_MARKER not in spec.env
    finally:
        w.stop(grace=0.5)


def test_dead_spawners_workloads_are_reaped_while_the_run_goes_on(procs):
    run = "20260101-000000-aaaa"  # this run: its pytest (us) is alive
    orphan = sleeper(run, dead_pid())
    kept = sleeper(run, os.getpid())
    other = sleeper("20260101-000001-bbbb", dead_pid())  # another run's orphan: not ours
    forged = sleeper(run, dead_pid(), key="f" * 32)  # our run id without our key
    procs += [orphan, kept, other, forged]
    for p in procs:
        wait_marked(p.pid)
    assert reap_orphans(run, KEY) == [(orphan.pid, run)]
    assert orphan.wait(timeout=5) == -9
    assert kept.poll() is None and other.poll() is None and forged.poll() is None


def test_a_zombie_spawner_counts_as_dead(procs):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    run = "20260101-000000-aaaa"
    orphan = sleeper(run, zombie.pid)  # its spawner died and was not waited for yet
    procs.append(orphan)
    wait_marked(orphan.pid)
    try:
        assert reap_orphans(run, KEY) == [(orphan.pid, run)]
    finally:
        zombie.wait()


def test_session_close_reaps_its_runs_orphans_and_logs_them(tmp_path, procs):
    session = MigSession(Settings(), "20260101-000000-aaaa", tmp_path)
    session.ensure_run_dir()
    orphan = sleeper(session.run_id, dead_pid(), key=session.key)
    procs.append(orphan)
    wait_marked(orphan.pid)
    session.close()
    assert orphan.wait(timeout=5) == -9
    log = (session.run_dir / "orphans.log").read_text()
    assert f"killed workload pid {orphan.pid}: the pytest process that started it" in log
