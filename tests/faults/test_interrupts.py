"""pytest itself is interrupted: a hang stopped by pytest-timeout (signal and thread methods),
Ctrl-C, an xdist worker killed mid-case. Children die with the case, or, where pytest is
gone before it can act (thread method: os._exit), the next run reaps them by their marker."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .helpers import (BGS, FAULTY, FAULTY_DIR, HEALTHY, HEALTHY_DIR,
                      assert_clean, assert_gpu_as_found, assert_leases_free, assert_logs_kept,
                      gpu_state)

def wait_for_file(root: Path, pattern: str, timeout_s: float = 90.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in root.glob(pattern) if p.stat().st_size > 0] if root.exists() else []
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing matched {root}/{pattern} within {timeout_s} s")


def ppid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])


def test_hang_stopped_by_timeout_signal_method(project):
    r = project.run({"cases": {"resnet50": {"main": "hang"}}},
                    "--timeout=12", "--timeout-method=signal")
    r.assert_outcomes(failed=1, passed=1)
    r.stdout.fnmatch_lines(["*Failed: Timeout (>12.0s) from pytest-timeout.*"])
    r.stdout.fnmatch_lines([f"PASSED *test_hetero?{HEALTHY}?"])
    rec = project.records()[FAULTY]
    assert rec["outcome"] == "failed" and "Timeout (>12.0s) from pytest-timeout" in rec["message"]
    assert rec["commands"]["main"]  # it got as far as the main
    assert_logs_kept(project.run_dir(), FAULTY_DIR, ("main", *BGS))
    assert_clean(project)


def test_hang_under_thread_method_exits_and_the_next_run_reaps_it(project):
    r = project.run({"cases": {"resnet50": {"main": "hang"}}},
                    "--timeout=12", "--timeout-method=thread")
    # pytest-timeout's thread method dumps every stack and calls os._exit(1): no finally,
    # no atexit, no report hook runs. pytest-mig stops the workloads first (what the project
    # promises: no process outlives its run) and writes the reports before that exit.
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*+ Timeout +*"])
    (first,) = project.run_dirs()
    assert_logs_kept(first, FAULTY_DIR, ("main", *BGS))
    main_pid = int((first / FAULTY_DIR / "main.pid").read_text())
    assert main_pid not in project.live_pids(), "the hung main outlived pytest"
    assert project.wait_no_leftovers() == []
    rec = project.records(first)[FAULTY]
    assert rec["outcome"] == "failed" and "Timeout (>12.0s)" in rec["message"], rec["message"]
    assert (first / "index.html").exists()
    assert_leases_free(first)
    # The next run finds nothing of it left to reap.
    r2 = project.run({})
    r2.assert_outcomes(passed=2)
    assert "killed leftover workload" not in r2.stdout.str(), r2.stdout.str()[-3000:]
    second = project.run_dirs()[-1]
    assert_gpu_as_found(second)


# The next run on the same machine: the simulated GPU and its ownership records carried over.
SAME_MACHINE = textwrap.dedent("""
    import shutil
    from pathlib import Path
    from pytest_mig.surface.case_fixtures import SESSION_KEY

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        for name in ("simulated-gpu.json", "mig-ownership.json"):
            shutil.copy(Path({previous!r}) / name, s.run_dir / name)
""")


EMPTY_GPU = textwrap.dedent("""
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        SimulatedNvml(s.run_dir / "simulated-gpu.json", layout={})
""")


def test_mig_instances_of_a_run_killed_by_thread_timeout_are_reclaimed_next_run(project):
    project.pytester.makeconftest(EMPTY_GPU)  # --mig-manage then creates every instance
    r = project.run({"cases": {"resnet50": {"main": "hang"}}}, "--mig-manage",
                    "--timeout=10", "--timeout-method=thread")
    assert r.ret == 1
    (first,) = project.run_dirs()
    (gpu,) = gpu_state(first)["gpus"]
    owned = json.loads((first / "mig-ownership.json").read_text())["instances"]
    # os._exit skipped the teardown: the run's 4 x 1g instances stay, recorded as its own.
    assert len(gpu["gpu_instances"]) == len(owned) == 4
    assert {o["run_id"] for o in owned} == {first.name}
    project.pytester.makeconftest(SAME_MACHINE.format(previous=str(first)))
    r2 = project.run({}, "--mig-manage")
    r2.assert_outcomes(passed=2)
    r2.stdout.fnmatch_lines([
        f"pytest-mig: crashed-run cleanup: destroyed GPU instance * (1g.10gb at memory slice *) "
        f"on GPU 0 (GPU-*), left behind: run {first.name} (pid *) ended without removing "
        "it"] * 4)
    second = project.run_dirs()[-1]
    assert gpu_state(second)["gpus"][0]["gpu_instances"] == []
    assert json.loads((second / "mig-ownership.json").read_text())["instances"] == []
    assert project.wait_no_leftovers() == []


def test_hang_under_thread_method_leaves_no_process_at_once(project):
    r = project.run({"cases": {"resnet50": {"main": "hang"}}},
                    "--timeout=12", "--timeout-method=thread")
    assert r.ret == 1
    assert project.leftovers() == []


def test_timeout_thread_method_stops_workloads_before_os_exit(project):
    r = project.run({"cases": {"resnet50": {"main": "hang"}}},
                    "--timeout=12", "--timeout-method=thread")
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*+ Timeout +*"])
    assert project.leftovers() == []
    assert_leases_free(project.run_dir())


def test_ctrl_c_mid_run(project):
    # Reversed roles: resnet50 (run first) is fine and bert's main hangs, so that Ctrl-C
    # lands mid-run after one case has finished and its results can be checked.
    first, second, second_dir = FAULTY, HEALTHY, HEALTHY_DIR
    # PYTHONFAULTHANDLER: if pytest ever fails to stop, SIGABRT dumps every thread's stack.
    proc = project.popen({"cases": {"bert": {"main": "hang"}}},
                         env=dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1"))
    pid_file = wait_for_file(project.reports, f"*/{second_dir}/main.pid")
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C delivers to pytest
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=30)
        pytest.fail("pytest did not stop within 120 s of SIGINT; its output and thread "
                    "stacks:\n" + project.output()[-8000:])
    assert code == pytest.ExitCode.INTERRUPTED
    out = project.output()
    assert "KeyboardInterrupt" in out and "1 passed" in out, out[-3000:]
    run_dir = project.run_dir()
    assert_logs_kept(run_dir, second_dir, ("main", *BGS))
    assert int(pid_file.read_text()) not in project.live_pids()
    recs = project.records()  # results.json was still written, with the case that finished
    assert recs[first]["outcome"] == "passed" and second not in recs
    assert_clean(project)


def test_supervisor_sigterm_then_sigkill_10s_later_leaves_nothing_running(project):
    # docker stop, a CI cancel, Slurm, Kubernetes: SIGTERM, then SIGKILL 10 s later. Session
    # backgrounds slow to honour SIGTERM (they ignore it) are told to stop at once, share
    # one short grace, are killed, and the reports are written before the 10 s are up.
    slow = "ignore_sigterm"
    proc = project.popen({"bg1": slow, "bg2": slow, "bg3": slow,
                          "cases": {"resnet50": {"main": "hang"}}}, "--mig-background=session",
                         # hypothesis's plugin imports all of it at the summary: seconds on a
                         # loaded host, none of them pytest-mig's
                         "-p", "no:hypothesispytest")
    wait_for_file(project.reports, f"*/{FAULTY_DIR}/main.pid")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()  # the supervisor's SIGKILL
        proc.wait()
        left = project.leftovers()
        project.kill_leftovers()
        pytest.fail(f"pytest still ran 10 s after SIGTERM; left running: {left}\n"
                    + project.output()[-4000:])
    assert code == pytest.ExitCode.INTERRUPTED, project.output()[-3000:]
    assert project.wait_no_leftovers() == []
    out = project.output()
    assert "pytest-mig: session backgrounds:" in out, out[-3000:]
    run_dir = project.run_dir()
    assert (run_dir / "results.json").exists() and (run_dir / "index.html").exists()
    state = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert state["interrupted"] == "SIGTERM"
    assert sorted(w["exit_code"] for w in state["workloads"]) == [-9, -9, -9]


def test_pytest_killed_by_sigkill_leaves_no_command_workload(project):
    # kill -9 (or the OOM killer) of pytest: no finally, no atexit. The guardian, not the
    # next run, stops every workload group of any harness (here --harness=command).
    proc = project.popen({"cases": {"resnet50": {"main": "hang"}}})
    wait_for_file(project.reports, f"*/{FAULTY_DIR}/main.pid")
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert project.wait_no_leftovers(timeout_s=20) == []
    note = (project.run_dir() / "orphans.log").read_text()
    assert "guardian: killed workload group" in note, note


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_cleanup_finishes_the_reports_quickly(project, sig):
    # The first signal starts the cleanup (backgrounds slow to honour SIGTERM); a second one,
    # impatient, kills every workload and lets the reports finish: no second traceback.
    slow = "ignore_sigterm"
    proc = project.popen({"bg1": slow, "bg2": slow, "bg3": slow,
                          "cases": {"resnet50": {"main": "hang"}}}, "--mig-background=session",
                         "-p", "no:hypothesispytest")
    wait_for_file(project.reports, f"*/{FAULTY_DIR}/main.pid")
    time.sleep(0.5)
    proc.send_signal(sig)
    time.sleep(1.5)
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("pytest still ran 60 s after two signals:\n" + project.output()[-4000:])
    out = project.output()
    assert code == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert f"pytest-mig: {sig.name} again during cleanup: every workload killed" in out, out[-3000:]
    assert out.count("Traceback") <= 1 and "INTERNALERROR" not in out, out[-5000:]
    assert (project.run_dir() / "results.json").exists()
    assert project.wait_no_leftovers() == []


def kill_worker_mid_case(project) -> tuple[int, str]:
    """Run both cases on two xdist workers sharing one GPU; SIGKILL the worker whose main
    hangs. Returns the hung main's pid and pytest's output."""
    proc = project.popen({"cases": {"resnet50": {"main": "hang"}}}, "-n", "2",
                         "--mig-lease-timeout=120")
    pid_file = wait_for_file(project.reports, f"*/{FAULTY_DIR}/main.pid")
    main_pid = int(pid_file.read_text())
    time.sleep(0.5)
    worker = ppid_of(main_pid)
    assert worker != proc.pid
    os.kill(worker, signal.SIGKILL)
    assert proc.wait(timeout=180) == pytest.ExitCode.TESTS_FAILED
    return main_pid, project.output()


def test_xdist_worker_killed_mid_case(project):
    main_pid, out = kill_worker_mid_case(project)
    assert (f"crashed while running 'suites/test_faults.py::test_hetero[{FAULTY}]'" in out
            and "1 failed, 1 passed" in out), out[-3000:]
    run_dir = project.run_dir()
    # The run killed what the dead worker had started (its guardian, or any process of the run
    # when it closes, and notes it in orphans.log), unless another pytest-mig run on this machine
    # started meanwhile and reaped them first: both go by the dead spawner's marker.
    orphans = run_dir / "orphans.log"
    if orphans.exists():
        text = orphans.read_text()
        assert (f"killed workload pid {main_pid}" in text
                or f"guardian: killed workload group {main_pid}:" in text), text
    assert main_pid not in project.live_pids()
    assert_logs_kept(run_dir, FAULTY_DIR, ("main", *BGS))
    assert project.records()[HEALTHY]["outcome"] == "passed"
    assert_clean(project)


def test_xdist_crashed_case_is_in_results_json(project):
    kill_worker_mid_case(project)
    assert project.records()[FAULTY]["outcome"] == "failed"


def test_a_crashed_workers_case_gets_a_record(project):
    kill_worker_mid_case(project)
    rec = project.records()[FAULTY]
    assert rec["outcome"] == "failed" and "crashed while running" in rec["message"]
    assert rec["nodeid"] == f"suites/test_faults.py::test_hetero[{FAULTY}]"
    assert_clean(project)
