"""Workloads are contained: what they spawn does not outlive the case (a sweep by the run's
key at case end and session end kills escaped descendants, with a warning naming them), and
SIGHUP stops a run like SIGTERM: every workload stopped, results kept."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from .helpers import FAULTY_DIR, HEALTHY, HEALTHY_DIR, assert_clean
from .test_interrupts import wait_for_file


def test_an_escaped_setsid_grandchild_is_killed_at_case_end_with_a_warning(project):
    r = project.run({"cases": {"resnet50": {"bg1": "escape"}}})
    r.assert_outcomes(passed=2)
    escapee = int((project.run_dir() / FAULTY_DIR / "bg1-bert.escapee").read_text())
    r.stdout.fnmatch_lines([f"*test_hetero?resnet50-Offline-1g.10gb-performance?: killed 1 "
                            f"escaped process(es) its workloads left running: pid {escapee} "
                            "(*) of workload bg1-bert*"])
    assert escapee not in project.live_pids()
    assert f"killed escaped process pid {escapee}" in (project.run_dir() / "orphans.log").read_text()
    assert_clean(project)


def test_sighup_stops_the_run_like_sigterm(project):
    proc = project.popen({"cases": {"bert": {"main": "hang"}}},
                         env=dict(os.environ, PYTHONFAULTHANDLER="1"))
    pid_file = wait_for_file(project.reports, f"*/{HEALTHY_DIR}/main.pid")
    assert proc.poll() is None
    proc.send_signal(signal.SIGHUP)  # the terminal or ssh session went away
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=30)
        pytest.fail("pytest did not stop within 120 s of SIGHUP:\n" + project.output()[-6000:])
    assert code == pytest.ExitCode.INTERRUPTED, project.output()[-3000:]
    assert "received signal 1" in project.output()
    assert int(pid_file.read_text()) not in project.live_pids()
    assert HEALTHY not in project.records()
    assert_clean(project)


def test_an_escaped_helper_with_a_clean_environment_is_found_by_its_pipe(project):
    # Double fork, setsid, a clean environment (sudo, systemd-run, docker exec): no marker
    # to find it by, but it still holds the workload's output pipe after the workload ended.
    r = project.run({"cases": {"resnet50": {"bg1": "escape_clean"}}})
    escapee = int((project.run_dir() / FAULTY_DIR / "bg1-bert.escapee").read_text())
    assert f"pid {escapee} (" in r.stdout.str(), r.stdout.str()[-3000:]
    r.stdout.fnmatch_lines([f"*escaped process(es)*pid {escapee} (*escaped from workload "
                            "bg1-bert (it still held its output pipe after the workload ended)*"])
    assert project.wait_no_leftovers() == [] and escapee not in project.live_pids()
