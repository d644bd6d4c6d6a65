"""Liveness of backgrounds (orchestration/liveness.py) on real processes: stopped, frozen,
stalled completions; a healthy one is never flagged."""
from __future__ import annotations

import os
import signal
import sys
import time

from pytest_mig.orchestration.liveness import LivenessWatch, trouble_of
from pytest_mig.orchestration.process import Workload, child_env, stop_workloads
from pytest_mig.types import LaunchSpec

SLEEPER = "print('Starting running actual test.', flush=True)\nimport time; time.sleep(60)"


def start(tmp_path, name: str) -> Workload:
    spec = LaunchSpec(argv=(sys.executable, "-c", SLEEPER), env=child_env({}, "run-test"),
                      cwd=tmp_path, ready_pattern="actual test", log_path=tmp_path / f"{name}.log",
                      result_dir=tmp_path / name)
    w = Workload(name, spec).start()
    assert w.wait_ready(20)
    return w


def test_stopped_and_frozen_are_flagged_healthy_is_not(tmp_path, freezer):
    ok, stopped, frozen = (start(tmp_path, n) for n in ("ok", "stopped", "frozen"))
    try:
        os.kill(stopped.pid, signal.SIGSTOP)
        freezer.freeze(frozen.pid)
        watch = LivenessWatch([(w.name, w, tmp_path / w.name) for w in (ok, stopped, frozen)],
                              every_s=0.1)
        time.sleep(0.6)
        watch.stop()
        assert not watch.flagged("ok") and watch.problems("ok", None) == []
        (p,) = watch.problems("stopped", watch.started - 1)
        assert p.startswith("was stopped (T: stopped") and "s after the main started)" in p
        (p,) = watch.problems("frozen", None)
        assert p.startswith("was frozen (") and "cgroup freezer" in p
    finally:
        stop_workloads([ok, stopped], grace=0.5)


def test_completions_that_stop_advancing_are_a_stall(tmp_path):
    w = start(tmp_path, "bg")
    try:
        (tmp_path / "bg").mkdir(exist_ok=True)
        log = tmp_path / "bg" / "completions.tsv"
        log.write_text(f"{time.time()}\t1\n")
        watch = LivenessWatch([("bg", w, tmp_path / "bg")], every_s=0.1, stall_s=0.5)
        time.sleep(0.3)
        assert not watch.flagged("bg")  # young: not stalled yet
        time.sleep(0.8)
        watch.stop()
        (p,) = watch.problems("bg", None)
        assert "its completions stopped advancing (completions.tsv untouched for" in p
    finally:
        stop_workloads([w], grace=0.5)


def test_states_in_words():
    assert trouble_of("S: sleeping") is None and trouble_of("R: running") is None
    assert trouble_of("t: stopped by a debugger (ptrace)").startswith("stopped")
    assert trouble_of("Z: a zombie, exited but not reaped").startswith("a zombie")
