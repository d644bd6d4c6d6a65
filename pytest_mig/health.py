"""The background health rule of heterogeneous runs, as plain functions of timestamps.

A background is healthy when it was in its timed phase before the main's began, was still
running when the main ended, ended no sooner than `end_buffer_s` after it, and exited 0.
"""
from __future__ import annotations

from pytest_mig.types import Finished, HealthReport, WorkloadHealth


def check_one(benchmark: str, bg: Finished, main: Finished, end_buffer_s: float) -> WorkloadHealth:
    problems: list[str] = []
    main_timed = main.ready_at or main.started_at
    main_end = main.ended_at
    if bg.ready_at is None:
        problems.append("never printed its ready line")
    elif bg.ready_at > main_timed:
        problems.append(f"became ready {bg.ready_at - main_timed:.2f} s after the main's timed "
                        "phase began")
    margin = None
    if bg.ended_at is not None and main_end is not None:
        margin = bg.ended_at - main_end
        if bg.stopped_by_us:
            problems.append("did not finish on its own; stopped by pytest-mig")
        elif margin < 0:
            problems.append(f"finished too early: {-margin:.2f} s before the main ended "
                            "(raise its min duration)")
        elif margin < end_buffer_s:
            problems.append(f"ended only {margin:.2f} s after the main (end_time_buffer_min is "
                            f"{end_buffer_s:g} s)")
    if bg.exit_code is None:
        problems.append("still running: no exit code")
    elif bg.exit_code != 0 and not bg.stopped_by_us:
        problems.append(f"exited with code {bg.exit_code}")
    return WorkloadHealth(name=bg.name, benchmark=benchmark, started_at=bg.started_at,
                          ready_at=bg.ready_at, ended_at=bg.ended_at, exit_code=bg.exit_code,
                          margin_s=margin, healthy=not problems, problems=problems,
                          log_path=bg.log_path)


def check_health(backgrounds: list[tuple[str, Finished]], main: Finished,
                 end_buffer_s: float) -> HealthReport:
    return HealthReport([check_one(b, f, main, end_buffer_s) for b, f in backgrounds])
