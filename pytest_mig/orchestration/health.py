"""The background health rules of heterogeneous runs, as plain functions of timestamps.

Per-test lifetime (NVIDIA's rule): a background is healthy when it was in its timed phase
before the main's began, was still running when the main ended, ended on its own no sooner
than `end_buffer_s` after it, and exited 0.

Stopped by pytest-mig: a workload that pytest-mig stops at the end of its lifetime (session
backgrounds at session end, a pool paused for an isolated baseline) was alive when signalled
(process.py decides that without a race). It is healthy when its end answers the stop:
exit 0, or, for harnesses that do not promise a clean exit on SIGTERM (NVIDIA's `make
run_harness`, a user's command), any non-zero exit or death by a stop signal. A crash signal
(SIGSEGV, SIGABRT, ...) is never an answer to a stop. A workload that ended before it was
stopped tells its own story: a crash (non-zero exit) is reported as a crash, not as an
early finish.
"""
from __future__ import annotations

import signal

from pytest_mig.types import Finished, HealthReport, WorkloadHealth

STOPPED_BY_US = "stopped by pytest-mig"
ENDED_ITSELF = "itself"
# Signals a process may die of when asked to stop (or when its group is killed after that).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP,
                          signal.SIGPIPE})


def describe_exit(code: int | None) -> str:
    """`exit code 1`, `killed by SIGSEGV`, `still running`."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def describe_death(code: int | None, oom: str = "") -> str:
    """How a main ended, for its failure: `exited with code 3`, `killed by SIGSEGV`, and for
    SIGKILL the likely cause (`oom`: the kernel's OOM record of it, when one was readable)."""
    if code is not None and code == -signal.SIGKILL:
        return ("killed by SIGKILL (" + (f"the OOM killer: kernel log: {oom}" if oom else
                "likely the OOM killer, or a kill -9 from outside; no OOM record of it was "
                "readable in the kernel log") + ")")
    return describe_exit(code).replace("exit code", "exited with code", 1)


def ended_by(f: Finished) -> str:
    if f.exit_code is None:
        return ""
    return STOPPED_BY_US if f.stopped_by_us else ENDED_ITSELF


def stop_problem(f: Finished, must_exit_zero: bool) -> str | None:
    """For a workload pytest-mig stopped: None when its end answers the stop, else why not."""
    code = f.exit_code
    if code == 0:
        return None
    if code is None:
        return f.stuck or "still running after it was stopped"
    if code < 0 and -code not in STOP_SIGNALS:
        return f"crashed while being stopped ({describe_exit(code)})"
    if must_exit_zero:
        return (f"{describe_exit(code)} when stopped by pytest-mig (this harness exits 0 on "
                "SIGTERM; see its log)")
    return None


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
    crashed = bg.exit_code not in (None, 0) and not bg.stopped_by_us
    if bg.ended_at is not None and main_end is not None:
        margin = bg.ended_at - main_end
        if bg.stopped_by_us:
            problems.append("did not finish on its own; stopped by pytest-mig")
        elif margin < 0 and crashed:
            problems.append(f"crashed ({describe_exit(bg.exit_code)}) {-margin:.2f} s before "
                            "the main ended; see its log")
        elif margin < 0:
            problems.append(f"finished too early: {-margin:.2f} s before the main ended "
                            "(raise its min duration)")
        elif margin < end_buffer_s:
            problems.append(f"ended only {margin:.2f} s after the main (end_time_buffer_min is "
                            f"{end_buffer_s:g} s)")
    if bg.exit_code is None:
        problems.append(bg.stuck or "still running: no exit code")
    elif crashed and not (margin is not None and margin < 0):
        problems.append(f"exited with code {bg.exit_code}" if bg.exit_code > 0
                        else describe_exit(bg.exit_code))
    return WorkloadHealth(name=bg.name, benchmark=benchmark, started_at=bg.started_at,
                          ready_at=bg.ready_at, ended_at=bg.ended_at, exit_code=bg.exit_code,
                          margin_s=margin, healthy=not problems, problems=problems,
                          log_path=bg.log_path, ended_by=ended_by(bg))


def check_health(backgrounds: list[tuple[str, Finished]], main: Finished,
                 end_buffer_s: float) -> HealthReport:
    return HealthReport([check_one(b, f, main, end_buffer_s) for b, f in backgrounds])
