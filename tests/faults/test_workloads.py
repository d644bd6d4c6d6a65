"""Workload faults: a background or the main crashes, hangs before ready, exits non-zero,
leaves no or a corrupt summary, or cannot be started. Each fails its case, naming the
workload and the cause; the healthy case after it passes; nothing of the run remains."""
from __future__ import annotations

import sys

import pytest

from .helpers import BGS, FAULTY, FAULTY_DIR, HEALTHY, assert_clean, assert_logs_kept


def only_faulty_failed(project, result, fault_lines: list[str], message: str) -> dict:
    """The faulty case failed with `message` in its record, the healthy one passed."""
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(fault_lines)
    # The healthy case ran after the faulty one and passed. (Their order from the records'
    # phase times: the terminal's progress line now carries the per-case status lines.)
    result.stdout.fnmatch_lines([f"PASSED *test_hetero?{HEALTHY}?"])
    recs = project.records()
    started = {c: min(recs[c].get("phases", {}).values(), default=None) for c in (FAULTY, HEALTHY)}
    assert None not in started.values() and started[FAULTY] < started[HEALTHY], started
    assert recs[FAULTY]["outcome"] == "failed" and message in recs[FAULTY]["message"]
    assert recs[HEALTHY]["outcome"] == "passed" and recs[HEALTHY]["result"]["valid"] is True
    assert_clean(project)
    return recs[FAULTY]


def test_background_crashes_before_ready(project):
    r = project.run({"cases": {"resnet50": {"bg2": "crash_before_ready"}}})
    rec = only_faulty_failed(project, r, [
        "*background bg2-dlrm (dlrm) exited with code 7 before it was ready; log: *bg2-dlrm.log",
        "*[[]fake[]] fatal: cannot open engine"],
        "background bg2-dlrm (dlrm) exited with code 7 before it was ready")
    assert "main" not in rec["commands"]  # the main never started
    # bg3 may have been stopped before its first line: its log exists, maybe empty.
    assert_logs_kept(project.run_dir(), FAULTY_DIR, BGS[:2])
    assert (project.run_dir() / FAULTY_DIR / "bg3-rnnt.log").exists()


def test_background_crashes_during_the_main_run(project):
    r = project.run({"cases": {"resnet50": {"bg1": "crash_during_main"}}})
    rec = only_faulty_failed(project, r, [
        "*background unhealthy: bg1-bert: crashed (exit code 3) * s before the main ended; "
        "see its log"],
        "bg1-bert: crashed (exit code 3)")
    assert "raise its min duration" not in r.stdout.str()  # a crash is not an early finish
    health = {h["name"]: h for h in rec["health"]}
    assert health["bg1-bert"]["exit_code"] == 3 and health["bg1-bert"]["margin_s"] < 0
    assert health["bg2-dlrm"]["healthy"] and health["bg3-rnnt"]["healthy"]
    assert rec["result"]["valid"] is True  # the main itself was fine
    assert_logs_kept(project.run_dir(), FAULTY_DIR, ("main", *BGS))


def test_background_crashes_after_the_main_run(project):
    r = project.run({"cases": {"resnet50": {"bg3": "crash_after_main"}}})
    rec = only_faulty_failed(project, r, ["*background unhealthy: bg3-rnnt: *exited with code 3"],
                             "bg3-rnnt: exited with code 3")
    (bg3,) = [h for h in rec["health"] if h["name"] == "bg3-rnnt"]
    assert bg3["margin_s"] > 0  # it outlived the main, then crashed
    assert_logs_kept(project.run_dir(), FAULTY_DIR, ("main", *BGS))


def test_background_never_ready(project):
    r = project.run({"cases": {"resnet50": {"bg1": "never_ready"}}})
    only_faulty_failed(project, r, [
        "*background bg1-bert (bert) was not ready within start_time_buffer 4 s; log: *"],
        "was not ready within start_time_buffer 4 s")
    assert_logs_kept(project.run_dir(), FAULTY_DIR, BGS)


def test_background_exits_nonzero(project):
    r = project.run({"cases": {"resnet50": {"bg2": "exit_nonzero"}}})
    rec = only_faulty_failed(project, r, ["*background unhealthy: bg2-dlrm: exited with code 4"],
                             "bg2-dlrm: exited with code 4")
    assert [h["healthy"] for h in rec["health"]] == [True, False, True]


def test_main_crashes(project):
    r = project.run({"cases": {"resnet50": {"main": "crash_after_ready"}}})
    rec = only_faulty_failed(project, r, [
        "*main resnet50 Offline exited with code 3; log: *main.log",
        "*--- last lines ---", "*[[]fake[]] segmentation fault (simulated)"],
        "main resnet50 Offline exited with code 3")
    assert rec["result"] is None
    assert len(rec["paths"]["background_logs"]) == 3  # stopped, their logs listed
    assert_logs_kept(project.run_dir(), FAULTY_DIR, ("main", *BGS))


def test_a_main_killed_by_sigkill_is_named_so_with_the_oom_killer_as_likely_cause(project):
    r = project.run({"cases": {"resnet50": {"main": "sigkill_self"}}})
    only_faulty_failed(project, r, ["*main resnet50 Offline killed by SIGKILL (*OOM killer*"],
                       "killed by SIGKILL (")
    assert "exited with code -9" not in r.stdout.str()


def test_main_prints_no_summary(project):
    r = project.run({"cases": {"resnet50": {"main": "no_summary"}}})
    rec = only_faulty_failed(project, r, [
        "*main resnet50 Offline: no LoadGen result (no mlperf_log_summary.txt in *main)*"],
        "no mlperf_log_summary.txt")
    assert rec["result"]["valid"] is None


def test_main_prints_a_corrupt_summary(project):
    r = project.run({"cases": {"resnet50": {"main": "corrupt_summary"}}})
    rec = only_faulty_failed(project, r, [
        "*main resnet50 Offline: no LoadGen result (*mlperf_log_summary.txt: not a LoadGen "
        "mlperf_log_summary.txt: no 'Result is' line (file truncated?)*"],
        "not a LoadGen mlperf_log_summary.txt")
    assert rec["result"]["valid"] is None and rec["result"]["files"]["summary"].endswith(
        "main/mlperf_log_summary.txt")


def test_harness_executable_missing(project):
    # bin/<benchmark>: every benchmark has an executable except the faulty case's main.
    bindir = project.path / "bin"
    bindir.mkdir()
    for bench in ("bert", "dlrm", "rnnt"):
        exe = bindir / bench
        exe.write_text(f"#!{sys.executable}\nimport os, sys\nos.execv(sys.executable, "
                       f"[sys.executable, {str(project.fake)!r}, *sys.argv[1:]])\n")
        exe.chmod(0o755)
    project.program = str(bindir / "{benchmark}")
    r = project.run({})
    rec = only_faulty_failed(project, r, [
        f"*HarnessError: main: cannot start '{bindir}/resnet50': executable not found "
        "(check the harness options or PATH)"],
        f"cannot start '{bindir}/resnet50': executable not found")
    # The backgrounds had started: they were stopped, and their logs are kept.
    assert_logs_kept(project.run_dir(), FAULTY_DIR, BGS)
    assert rec["commands"]["main"][0] == f"{bindir}/resnet50"


def test_grandchildren_of_a_failed_case_are_killed_with_their_group(project):
    r = project.run({"grandchild": True, "cases": {"resnet50": {"main": "crash_after_ready"}}})
    only_faulty_failed(project, r, ["*main resnet50 Offline exited with code 3*"],
                       "exited with code 3")
    assert len(project.recorded_pids()) == 8  # 2 cases x (main + 3 backgrounds)


def test_session_background_dies_mid_run_then_is_restarted(project):
    # Session lifetime: backgrounds outlive cases. One dies during the faulty case's main;
    # that case fails naming it, the next case gets a restarted one and passes.
    r = project.run({"bg1": "crash_on_trigger", "cases": {"resnet50": {"main": "trigger"}}},
                    "--mig-background=session")
    rec = only_faulty_failed(project, r, [
        "*background unhealthy: bg1-bert: ended (exit code 3) before the main ended; it is "
        "restarted for the next test"], "bg1-bert: ended (exit code 3) before the main ended")
    r.stdout.fnmatch_lines(["pytest-mig: session backgrounds: 4 started, 1 restarted, stopped "
                            "cleanly"])
    assert not (project.path / "trigger").exists()  # taken by the background that died
    bg_logs = sorted(p.name for p in project.run_dir().glob("session-backgrounds/*/*.log"))
    assert bg_logs == ["bg1-bert-r1.log", "bg1-bert.log", "bg2-dlrm.log", "bg3-rnnt.log"]
    assert "segmentation fault (simulated, on trigger)" in next(
        project.run_dir().glob("session-backgrounds/*/bg1-bert.log")).read_text()
    assert rec["outcome"] == "failed"


def _wait_for(path_glob, timeout_s: float = 90.0):
    import time
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in path_glob() if p.exists() and p.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"not there within {timeout_s} s")


@pytest.mark.parametrize("lifetime", ["per-test", "session"])
def test_a_background_stopped_during_the_main_fails_the_case_saying_since_when(project,
                                                                              lifetime):
    # kill -STOP on a background while the main runs: its exit code says nothing (it has
    # none), /proc says T. The case fails naming it and since when;
    # the healthy case after it passes (a session background is restarted for it).
    import os
    import signal
    import time
    extra = ["--mig-background=session"] if lifetime == "session" else []
    proc = project.popen({"cases": {"resnet50": {"main": "trigger"}}}, *extra)
    trigger = project.path / "trigger"
    _wait_for(lambda: [trigger])
    pattern = (f"*/{FAULTY_DIR}/bg1-bert.pid" if lifetime == "per-test"
               else "*/session-backgrounds/*/bg1-bert.pid")
    pid = int(_wait_for(lambda: list(project.reports.glob(pattern))).read_text())
    os.kill(pid, signal.SIGSTOP)
    time.sleep(1.5)  # the watch samples every 0.5 s
    trigger.unlink()  # the main goes on and ends
    assert proc.wait(timeout=240) == 1, project.output()[-3000:]
    out = project.output()
    recs = project.records()
    message = recs[FAULTY]["message"]
    assert recs[FAULTY]["outcome"] == "failed", message
    assert "bg1-bert: was stopped (T: stopped" in message and " since " in message, message
    assert "s after the main started) while the main ran" in message, message
    assert recs[HEALTHY]["outcome"] == "passed", out[-3000:]
    assert_clean(project)


def test_a_frozen_background_is_named_abandoned_and_the_reports_are_written(project, freezer):
    # A background frozen in a cgroup (as one stuck in the GPU driver after an Xid) ignores
    # even SIGKILL: the case fails naming it and its state, the other workloads are stopped,
    # pytest ends in bounded time and writes every report.
    import os
    import time
    proc = project.popen({"cases": {"resnet50": {"main": "trigger"}}})
    trigger = project.path / "trigger"
    _wait_for(lambda: [trigger])
    pid = int(_wait_for(lambda: list(project.reports.glob(f"*/{FAULTY_DIR}/bg1-bert.pid")))
              .read_text())
    freezer.freeze(pid)
    time.sleep(1.5)  # the watch samples every 0.5 s
    trigger.unlink()
    assert proc.wait(timeout=240) == 1, project.output()[-3000:]
    out = project.output()
    recs = project.records()
    message = recs[FAULTY]["message"]
    assert "bg1-bert: was frozen (D: stuck in the kernel or driver" in message, message
    assert "frozen by the cgroup freezer" in message
    assert f"pytest-mig: workload bg1-bert: pid {pid} would not die" in out, out[-3000:]
    assert "abandoned" in out
    assert recs[HEALTHY]["outcome"] == "passed", out[-3000:]
    run = project.run_dir()
    assert (run / "results.json").exists() and (run / "index.html").exists()
    assert os.path.exists(f"/proc/{pid}")  # still frozen: the freezer fixture ends it
