"""The background health rule: ready before the main, outlives it by the buffer, exits 0."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.orchestration.health import check_health, check_one, stop_problem
from pytest_mig.types import Finished

MAIN = Finished("main", started_at=100.0, ready_at=105.0, ended_at=110.0, exit_code=0,
                log_path=Path("main.log"))


def bg(**kw) -> Finished:
    base = dict(name="bg1-bert", started_at=90.0, ready_at=95.0, ended_at=115.0, exit_code=0,
                log_path=Path("bg.log"))
    base.update(kw)
    return Finished(**base)


def test_healthy():
    h = check_one("bert", bg(), MAIN, end_buffer_s=2.0)
    assert h.healthy and h.margin_s == 5.0 and h.problems == []


def test_finished_too_early():
    h = check_one("bert", bg(ended_at=108.0), MAIN, 2.0)
    assert not h.healthy
    assert h.problems == ["finished too early: 2.00 s before the main ended (raise its min duration)"]


def test_inside_end_buffer():
    h = check_one("bert", bg(ended_at=111.0), MAIN, 2.0)
    assert h.problems == ["ended only 1.00 s after the main (end_time_buffer_min is 2 s)"]


def test_nonzero_exit_and_late_ready():
    h = check_one("bert", bg(exit_code=1, ready_at=106.0), MAIN, 2.0)
    assert "exited with code 1" in h.problems
    assert any("after the main's timed phase began" in p for p in h.problems)


def test_stopped_by_us_is_unhealthy():
    h = check_one("bert", bg(stopped_by_us=True, exit_code=-15), MAIN, 2.0)
    assert h.problems == ["did not finish on its own; stopped by pytest-mig"]


def test_report_aggregates():
    rep = check_health([("bert", bg()), ("dlrm", bg(name="bg2-dlrm", exit_code=2))], MAIN, 2.0)
    assert not rep.healthy
    assert rep.problems() == ["bg2-dlrm: exited with code 2"]


def test_crash_before_main_end_is_a_crash_not_an_early_finish():
    h = check_one("bert", bg(ended_at=108.0, exit_code=1), MAIN, 2.0)
    assert h.problems == ["crashed (exit code 1) 2.00 s before the main ended; see its log"]
    h = check_one("bert", bg(ended_at=108.0, exit_code=-11), MAIN, 2.0)
    assert h.problems == ["crashed (killed by SIGSEGV) 2.00 s before the main ended; see its log"]
    assert h.ended_by == "itself"


def test_killed_by_signal_after_main_is_named():
    h = check_one("bert", bg(exit_code=-9), MAIN, 2.0)
    assert h.problems == ["killed by SIGKILL"]


@pytest.mark.parametrize("code,must_zero,problem", [
    (0, True, None),
    (-15, False, None),                       # make died of our SIGTERM
    (2, False, None),                         # make: *** [run_harness] Terminated
    (-9, False, None),                        # killed after the grace period
    (-15, True, "killed by SIGTERM when stopped by pytest-mig (this harness exits 0 on SIGTERM; see its log)"),
    (1, True, "exit code 1 when stopped by pytest-mig (this harness exits 0 on SIGTERM; see its log)"),
    (-11, False, "crashed while being stopped (killed by SIGSEGV)"),
    (-6, True, "crashed while being stopped (killed by SIGABRT)"),
])
def test_stop_problem(code, must_zero, problem):
    assert stop_problem(bg(stopped_by_us=True, exit_code=code), must_zero) == problem


def test_a_sigkill_death_names_the_oom_killer():
    from pytest_mig.orchestration.health import describe_death
    assert describe_death(3) == "exited with code 3"
    assert describe_death(-11) == "killed by SIGSEGV"
    assert describe_death(-9).startswith("killed by SIGKILL (likely the OOM killer, or a kill -9")
    assert describe_death(-9, "Out of memory: Killed process 42 (python)") == (
        "killed by SIGKILL (the OOM killer: kernel log: Out of memory: Killed process 42 "
        "(python))")
