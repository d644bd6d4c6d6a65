"""Workload processes: argv only, own process group, streamed logs, readiness, reaping."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pytest_mig.errors import HarnessError
from pytest_mig.orchestration.process import (RUN_MARKER, Workload, child_env, process_state,
                                              stop_all, stop_workloads)
from pytest_mig.types import LaunchSpec

READY = r"running actual test\.\s*$"


def spec(tmp_path, code: str, name: str = "w") -> LaunchSpec:
    return LaunchSpec(argv=(sys.executable, "-c", code), env=child_env({}, "run-test"),
                      cwd=tmp_path, ready_pattern=READY, log_path=tmp_path / f"{name}.log",
                      result_dir=tmp_path / name)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ready_line_detected_and_logged(tmp_path):
    code = ("import sys,time\nfor i in range(2000): print('noise', i)\n"
            "print('Starting running actual test.', flush=True)\ntime.sleep(0.2)\nprint('bye')")
    w = Workload("w", spec(tmp_path, code)).start()
    assert w.wait_ready(20)
    assert w.ready_at is not None and w.ready_at >= w.started_at
    assert w.wait(20) == 0
    log = (tmp_path / "w.log").read_text()
    assert "noise 1999" in log and log.endswith("bye\n")


def test_exit_before_ready_returns_false_quickly(tmp_path):
    w = Workload("w", spec(tmp_path, "import sys; print('boom'); sys.exit(3)")).start()
    t0 = time.monotonic()
    assert not w.wait_ready(30)
    assert time.monotonic() - t0 < 10
    assert w.wait(5) == 3
    assert "boom" in w.tail_text()


def test_never_ready_times_out(tmp_path):
    w = Workload("w", spec(tmp_path, "import time; time.sleep(60)")).start()
    t0 = time.monotonic()
    assert not w.wait_ready(0.5)
    assert 0.4 < time.monotonic() - t0 < 5
    w.stop(grace=1)
    assert not w.running()


def test_stop_kills_whole_group_including_grandchildren(tmp_path):
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess,sys,time\n"
            "p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)'])\n"
            f"open({str(pidfile)!r},'w').write(str(p.pid))\n"
            "print('Starting running actual test.', flush=True)\ntime.sleep(60)")
    w = Workload("w", spec(tmp_path, code)).start()
    assert w.wait_ready(20)
    grandchild = int(pidfile.read_text())
    assert alive(grandchild)
    w.stop(grace=1)
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_ignores_sigterm_gets_killed(tmp_path):
    code = ("import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('Starting running actual test.', flush=True)\ntime.sleep(60)")
    w = Workload("w", spec(tmp_path, code)).start()
    assert w.wait_ready(20)
    code = w.stop(grace=0.5)
    assert code == -9


IGNORES_SIGTERM = ("import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('Starting running actual test.', flush=True)\ntime.sleep(60)")


def test_many_stops_share_one_grace(tmp_path):
    # Three workloads slow to honour SIGTERM: signalled at once, one grace, not one each.
    ws = [Workload(f"w{i}", spec(tmp_path, IGNORES_SIGTERM, f"w{i}")).start() for i in range(3)]
    assert all(w.wait_ready(20) for w in ws)
    said: list[str] = []
    t0 = time.monotonic()
    assert stop_workloads(ws, grace=2.0, say=said.append) == []
    took = time.monotonic() - t0
    assert took < 4.5, f"{took:.1f} s: the grace was not shared"
    assert [w.returncode for w in ws] == [-9, -9, -9]
    assert all(w.stopped_by_us for w in ws)
    # What it waited for was said, naming each.
    assert any("waiting up to" in line and "w0 (pid" in line and "w2 (pid" in line
               for line in said), said


def test_a_frozen_workload_is_named_and_abandoned_in_bounded_time(tmp_path, freezer):
    # A process frozen by a cgroup freezer (as one stuck in the GPU driver after an Xid)
    # ignores SIGKILL until thawed: the stop gives up on it and says why; the other stops.
    frozen = Workload("frozen", spec(tmp_path, IGNORES_SIGTERM, "frozen")).start()
    other = Workload("other", spec(tmp_path, IGNORES_SIGTERM, "other")).start()
    assert frozen.wait_ready(20) and other.wait_ready(20)
    freezer.freeze(frozen.pid)
    said: list[str] = []
    t0 = time.monotonic()
    stuck = stop_workloads([frozen, other], grace=0.5, kill_wait=1.0, say=said.append)
    assert time.monotonic() - t0 < 5
    assert stuck == [frozen] and other.returncode == -9
    assert frozen.returncode is None and frozen.finished().exit_code is None
    assert "D: stuck in the kernel or driver" in frozen.stuck, frozen.stuck
    assert "frozen by the cgroup freezer" in frozen.stuck and "abandoned" in frozen.stuck
    assert any("workload frozen:" in line and "abandoned" in line for line in said), said
    assert frozen.finished().stuck == frozen.stuck
    # Abandoned: no later stop waits for it again.
    t0 = time.monotonic()
    stop_all(grace=0.5)
    assert time.monotonic() - t0 < 3


def test_process_state_in_words(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(p.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not process_state(p.pid).startswith("T") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process_state(p.pid).startswith("T: stopped")
    finally:
        p.kill()
        p.wait()
    assert process_state(p.pid) == "gone"


def test_stop_all_reaps_registered(tmp_path):
    ws = [Workload(f"w{i}", spec(tmp_path, "import time; time.sleep(60)", f"w{i}")).start()
          for i in range(3)]
    assert stop_all(grace=0.5) >= 3
    assert all(not w.running() for w in ws)


def test_missing_executable_is_our_error(tmp_path):
    s = LaunchSpec(argv=("/no/such/harness",), env={}, cwd=tmp_path, ready_pattern=READY,
                   log_path=tmp_path / "x.log", result_dir=tmp_path / "x")
    with pytest.raises(HarnessError, match="executable not found"):
        Workload("x", s).start()


def test_child_env_is_explicit(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    env = child_env({"CUDA_VISIBLE_DEVICES": "MIG-abc"}, "r1")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "MIG-abc" and env[RUN_MARKER] == "r1"


def test_reap_dead_runs_kills_keyed_children_of_dead_runs(tmp_path):
    from pytest_mig.orchestration.process import KEY_MARKER, reap_dead_runs
    from pytest_mig.runid import RunKey, write_key

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for run, owner in (("20260101-000000-dead", dead.pid), ("20260101-000000-live", os.getpid())):
        (tmp_path / run).mkdir()
        write_key(tmp_path / run, RunKey("k" * 32, owner, None))
    env = dict(os.environ, PYTEST_MIG_RUN_ID="20260101-000000-dead", **{KEY_MARKER: "k" * 32})
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                              start_new_session=True)
    live_env = dict(env, PYTEST_MIG_RUN_ID="20260101-000000-live")
    kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=live_env,
                            start_new_session=True)
    try:
        time.sleep(0.2)
        reaped = reap_dead_runs(tmp_path, "current-run")
        assert reaped == [(orphan.pid, "20260101-000000-dead")]
        assert orphan.wait(timeout=5) == -9
        assert kept.poll() is None  # its run's pytest (us) is alive: not touched
    finally:
        for p in (orphan, kept):
            p.kill()
            p.wait()


def test_finished_right_after_the_exit_waits_for_the_reap(tmp_path, monkeypatch):
    """`running()` turns False when the kernel reports the exit; the waiter thread reaps right
    after. A `finished()` read in that gap must carry the exit code, not None ('still running:
    no exit code' on a background that had exited, seen under CI load)."""
    import pytest_mig.orchestration.process as process_mod

    real_popen_wait = subprocess.Popen.wait

    def slow_reap(self, *args, **kwargs):  # the waiter thread reaps 1 s after it saw the exit
        time.sleep(1.0)
        return real_popen_wait(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "wait", slow_reap)
    w = Workload("w", spec(tmp_path, "import sys; sys.exit(3)")).start()
    while w.running():
        time.sleep(0.01)
    assert w.finished().exit_code == 3
    assert process_mod.REAP_WAIT_S >= 1.0
