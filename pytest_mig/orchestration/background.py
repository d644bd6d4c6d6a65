"""Session-lifetime backgrounds: started once per slot and layout, kept in their timed phase
across many main runs, checked alive at each main's end, restarted when one died, and
stopped and checked at session end.

A background pytest-mig stops (session end, or a pause so an isolated baseline runs with no
neighbour) is recorded `stopped by pytest-mig`; it is healthy when its end answers the stop
(health.stop_problem: the built-in harness must exit 0, NVIDIA's make may die of the signal).
One that had ended before it was stopped is unhealthy and says how it ended. When the run
itself was interrupted (pytest got SIGTERM/SIGINT/SIGHUP), a background found dead at the
stop is reported as ended during the interruption, not as a crash of its own.

Stops are bounded (process.stop_workloads): every background being stopped gets SIGTERM at
once and they share one grace (INTERRUPTED_GRACE_S when the run was interrupted: a
supervisor's SIGKILL follows its SIGTERM within seconds); one that will not die is reported
with its state and abandoned.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_mig.orchestration.health import describe_exit, ended_by, stop_problem
from pytest_mig.orchestration.hetero_run import await_ready, env_for, place
from pytest_mig.orchestration.process import INTERRUPTED_GRACE_S, Workload, stop_workloads
from pytest_mig.types import (PERFORMANCE, Case, Finished, HealthReport, Partition, Slot,
                              WorkloadHealth, WorkSpec)

# Long enough to outlast any session; the built-in harness is also told to run until stopped.
UNTIL_STOPPED_MS = 24 * 3600 * 1000


@dataclass
class _Running:
    work: WorkSpec
    partition: Partition
    workload: Workload
    restarts: int = 0
    stop_exit_zero: bool = True  # the harness's promise (Harness.stop_exit_zero)


@dataclass
class BackgroundPool:
    """Backgrounds per GPU, keyed by what they run where; one pool per pytest process."""

    log_root: Path
    stop_grace_s: float = 30.0
    key: dict[str, tuple] = field(default_factory=dict)  # gpu uuid -> layout key
    running: dict[str, list[_Running]] = field(default_factory=dict)
    finals: list[WorkloadHealth] = field(default_factory=list)  # checks at stop time
    restarts: int = 0
    starts: int = 0
    pauses: int = 0  # stops for isolated baselines

    def plan(self, case: Case, slot: Slot, settings) -> list[tuple[WorkSpec, Partition]]:
        gpu_dir = self.log_root / slot.gpu_uuid
        plan = []
        for i, (bench, part) in enumerate(zip(case.background, slot.background), start=1):
            name = f"bg{i}-{bench}"
            plan.append((WorkSpec(
                role="background", name=name, benchmark=bench,
                scenario=settings.background_scenario, mode=PERFORMANCE,
                min_duration_ms=UNTIL_STOPPED_MS, min_query_count=1, log_dir=gpu_dir / name,
                sample_count=case.run_profile.sample_count,
                options={**case.harness_options, "until_stopped": "1"}), part))
        self._start_buffer = case.run_profile.start_time_buffer_s
        self._end_buffer = case.run_profile.end_time_buffer_min_s
        return plan

    def ensure(self, plan, harness, settings, out, say) -> list[tuple[WorkSpec, Workload]]:
        """Start what is missing (first use, new layout, or a dead one) and await it."""
        if not plan:
            return []
        gpu = plan[0][1].gpu_uuid
        key = tuple((w.benchmark, p.device_id) for w, p in plan)
        if self.key.get(gpu) != key:
            self.stop_gpu(gpu)
            self.key[gpu] = key
            self.running[gpu] = []
        current = self.running[gpu]
        fresh: list[tuple[WorkSpec, Workload]] = []
        for i, (work, part) in enumerate(plan):
            prior = current[i] if i < len(current) else None
            if prior is not None and prior.workload.running() and not prior.workload.stuck:
                continue
            restarts = 0
            if prior is not None:  # died since the last check: restart it under a new name
                restarts = prior.restarts + 1
                self.restarts += 1
                work = replace(work, log_dir=work.log_dir.with_name(f"{work.name}-r{restarts}"))
                say(f"restarting background {work.name} (it had ended: "
                    f"{describe_exit(prior.workload.poll())})")
            spec = harness.launch(work, part, env_for(part, settings.run_id),
                                  work.log_dir.with_suffix(".log"))
            w = Workload(work.name, spec).start()
            place(out, settings, i + 1, work.name, w)
            self.starts += 1
            entry = _Running(work, part, w, restarts,
                             stop_exit_zero=getattr(harness, "stop_exit_zero", True))
            if prior is None:
                current.append(entry)
            else:
                current[i] = entry
            fresh.append((work, w))
        for r in current:
            out.commands[r.work.name] = list(r.workload.spec.argv)
        if fresh:
            out.phases["backgrounds_started"] = time.time()
            say(f"{len(fresh)} session background workload(s) started")
            await_ready(fresh, self._start_buffer, say)
        else:
            say(f"{len(current)} session background workload(s) still running")
        return [(r.work, r.workload) for r in current]

    def check(self, main: Finished, gpu: str, flagged: frozenset[str] = frozenset()) -> HealthReport:
        """At a main's end each background must still be in its timed phase. One `flagged`
        (found stopped, frozen or stalled while the main ran: liveness.py) is stopped now, so
        the next test starts it afresh."""
        report = HealthReport()
        sick = [r for r in self.running.get(gpu, []) if r.work.name in flagged]
        if sick:
            stop_workloads([r.workload for r in sick], grace=self.stop_grace_s)
        for r in self.running.get(gpu, []):
            f = r.workload.finished()
            problems = []
            if r in sick:
                problems.append("it was stopped and is restarted for the next test")
            if f.ready_at is None or f.ready_at > (main.ready_at or main.started_at):
                problems.append("was not in its timed phase when the main's began")
            if f.exit_code is not None and r not in sick:
                problems.append(f"ended ({describe_exit(f.exit_code)}) before the main ended; "
                                "it is restarted for the next test")
            report.workloads.append(WorkloadHealth(
                name=f.name, benchmark=r.work.benchmark, started_at=f.started_at,
                ready_at=f.ready_at, ended_at=f.ended_at, exit_code=f.exit_code, margin_s=None,
                healthy=not problems, problems=problems, log_path=f.log_path))
        return report

    def stop_gpu(self, gpu: str, why: str = "session end", interrupted: str = "") -> None:
        """Stop one GPU's backgrounds (SIGTERM, then SIGKILL after the grace) and judge each.

        `why` names the occasion in messages; `interrupted` names the signal that interrupted
        the run, if any (a background found dead then ended with the run, not on its own).
        """
        self._stop({gpu: self.running.pop(gpu, [])}, why, interrupted)

    def _stop(self, by_gpu: dict[str, list[_Running]], why: str, interrupted: str) -> None:
        every = [r for runs in by_gpu.values() for r in runs]
        grace = min(self.stop_grace_s, INTERRUPTED_GRACE_S) if interrupted else self.stop_grace_s
        stop_workloads([r.workload for r in every], grace=grace)
        for r in every:
            f = r.workload.finished()
            problems = []
            if not f.stopped_by_us:
                how = describe_exit(f.exit_code)
                if interrupted:
                    problems.append(f"had ended ({how}) during the interruption ({interrupted}) "
                                    f"before pytest-mig stopped it; see its log")
                else:
                    problems.append(f"had already ended ({how}) before {why}; see its log")
            else:
                problem = stop_problem(f, r.stop_exit_zero)
                if problem:
                    problems.append(f"{problem} at {why}")
            self.finals.append(WorkloadHealth(
                name=f.name, benchmark=r.work.benchmark, started_at=f.started_at,
                ready_at=f.ready_at, ended_at=f.ended_at, exit_code=f.exit_code, margin_s=None,
                healthy=not problems, problems=problems, log_path=f.log_path,
                ended_by=ended_by(f)))
        for gpu in by_gpu:
            self.key.pop(gpu, None)

    def pause_gpu(self, gpu: str, say) -> int:
        """Stop one GPU's backgrounds so a main can run with no neighbour (isolated baseline);
        the next ensure() starts them afresh. Returns how many were stopped."""
        count = len(self.running.get(gpu, []))
        if count:
            say(f"pausing {count} session background workload(s) for the isolated baseline")
            self.stop_gpu(gpu, why="the pause for an isolated baseline")
            self.pauses += 1
        return count

    def stop_all(self, interrupted: str = "") -> HealthReport:
        """Every GPU's backgrounds at once, with one shared grace."""
        by_gpu = {gpu: self.running.pop(gpu) for gpu in list(self.running)}
        self._stop(by_gpu, "session end", interrupted)
        return HealthReport(list(self.finals))

