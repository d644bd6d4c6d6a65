"""One heterogeneous run: backgrounds started and awaited, the main run, the health check.

It knows nothing of which harness or GPU backend is used: it gets a Harness and a Slot.

Isolated baselines (--mig-isolated-baseline) run the main alone with no neighbour workload
active on its GPU: per-test backgrounds are not started yet; session backgrounds of that GPU
are stopped (recorded `stopped by pytest-mig`, healthy) and started afresh after the
baseline. `HeteroOutcome.isolation` records how the baseline was isolated and which compute
processes NVML saw on the main's GPU while it ran (on the simulated GPU: the processes
registered with the simulator). A baseline that saw another process (`verified: False`) is
untrusted: `interference` is None and `interference_untrusted` holds the figure and why.
"""
from __future__ import annotations

import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pytest_mig.harness.base import Harness
from pytest_mig.orchestration.health import check_health, describe_death
from pytest_mig.orchestration.liveness import LivenessWatch
from pytest_mig.orchestration.process import (Workload, child_env, oom_record,
                                              stop_workloads)
from pytest_mig.gpu.affinity import CpuPlan, Placement, pin
from pytest_mig.results.slices import Aggregate, aggregate, is_throughput, slice_figure
from pytest_mig.results.window import window_in_dir
from pytest_mig.workload_contract import SLICE_ENV
from pytest_mig.types import (PERFORMANCE, BenchmarkResult, Case, Finished, HealthReport,
                              Partition, Slot, WorkSpec)


class WorkloadFailure(AssertionError):
    """A workload failed in a way that makes the case fail (not an infrastructure error)."""


@dataclass(frozen=True)
class HeteroSettings:
    """Knobs of the orchestration, from Settings (their defaults are Settings')."""

    run_id: str
    main_startup_s: float  # allowance for the main to start and reach its timed phase
    main_timeout_s: float
    lenient: bool
    isolated_baseline: bool  # run the main alone first, report interference
    background_scenario: str = "Offline"
    stop_grace_s: float = 5.0
    # Seconds the main is expected to take from launch to exit; None: not known yet.
    expected_main_s: float | None = None
    cpu_plan: CpuPlan | None = None  # CPU shares of this GPU's workloads (gpu/affinity.py)
    rounds: int = 1  # the main runs this many times in the case (--mig-rounds)


@dataclass
class HeteroOutcome:
    """Everything one case produced; the test body asserts on it, reports read it."""

    case: Case
    test_dir: Path
    main: Finished | None = None
    result: BenchmarkResult | None = None
    backgrounds: list[Finished] = field(default_factory=list)
    health: HealthReport = field(default_factory=HealthReport)
    commands: dict[str, list[str]] = field(default_factory=dict)
    background_min_duration_ms: int = 0
    warnings: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # name -> time.time()
    lenient: bool = False
    isolated: BenchmarkResult | None = None  # the main alone on its partition, when asked
    isolation: dict = field(default_factory=dict)  # how the baseline was isolated (see module)
    slices: Aggregate | None = None  # every slice's figure and their sums (results/slices.py)
    placement: dict[str, dict] = field(default_factory=dict)  # workload -> CPU cores, note
    activity: dict = field(default_factory=dict)  # per-slice GPM means over the main's run
    gpu_busy: dict = field(default_factory=dict)  # share of each slice busy (report/busy.py)
    rounds: dict = field(default_factory=dict)  # --mig-rounds > 1: n, values, min, max, spread

    @property
    def interference(self) -> float | None:
        """1 - hetero/isolated for throughput; 1 - isolated/hetero for latency headlines.
        None when the baseline is untrusted (`interference_untrusted` holds the figure)."""
        if self.baseline_untrusted:
            return None
        return interference(self.isolated, self.result)

    @property
    def baseline_untrusted(self) -> str:
        """Why the isolated baseline cannot be trusted: '' unless its check saw another
        process on the GPU (`isolation.verified` is False; None, not verifiable, is not)."""
        if self.isolated is None or self.isolation.get("verified") is not False:
            return ""
        return ("isolated baseline not verified alone: "
                + str(self.isolation.get("verification") or "no reason recorded"))

    @property
    def interference_untrusted(self) -> dict | None:
        """{value, reason} of an interference computed from an untrusted baseline, else None."""
        why = self.baseline_untrusted
        if not why:
            return None
        return {"value": interference(self.isolated, self.result), "reason": why}

    @property
    def background_healthy(self) -> bool:
        """Healthy, or unhealthy but downgraded to warnings by --mig-lenient."""
        return self.health.healthy or self.lenient

    @property
    def valid(self) -> bool:
        return bool(self.result and self.result.valid)

    def why_invalid(self) -> str:
        r = self.result
        if r is None:
            return "main produced no result"
        if r.valid is None:
            return (f"main {self.case.benchmark} {self.case.scenario}: no LoadGen result "
                    f"({'; '.join(r.errors)}); log: {self.main.log_path if self.main else '?'}")
        reasons = "; ".join(r.invalid_reasons) or "LoadGen gave no reason"
        return (f"main {self.case.benchmark} {self.case.scenario} result is {r.result_text}: "
                f"{reasons} (summary: {r.files.get('summary')})")

    @property
    def accuracy_target(self) -> float:
        ref = (self.result.accuracy_reference if self.result and self.result.accuracy_reference
               is not None else self.case.accuracy_reference)
        return ref * self.case.accuracy_fraction

    @property
    def accuracy_ok(self) -> bool:
        r = self.result
        return bool(r and r.accuracy_value is not None and r.accuracy_value >= self.accuracy_target)

    def why_accuracy(self) -> str:
        r = self.result
        if r is None or r.accuracy_value is None:
            errs = "; ".join(r.errors) if r else "no result"
            return f"no accuracy measured ({errs})"
        return (f"{r.accuracy_metric}={r.accuracy_value:.4f} below target "
                f"{self.accuracy_target:.4f} ({self.case.accuracy_fraction:.1%} of "
                f"{self.accuracy_target / self.case.accuracy_fraction:.4f}); "
                f"see {r.files.get('accuracy')}")

    def why_unhealthy(self) -> str:
        return "background unhealthy: " + "; ".join(self.health.problems())


def interference(isolated: BenchmarkResult | None, hetero: BenchmarkResult | None) -> float | None:
    if not isolated or not hetero or not isolated.metric_value or not hetero.metric_value:
        return None
    if "latency" in hetero.metric_name.lower():  # lower is better
        return 1.0 - isolated.metric_value / hetero.metric_value
    return 1.0 - hetero.metric_value / isolated.metric_value


class DurationEstimator:
    """Learns how long main runs take (launch to exit) so backgrounds are sized to outlast them.

    Keyed by (benchmark, scenario, mode); an unseen key is unknown (None), and
    background_duration_ms sizes its backgrounds by its start-up rule: the longest run of
    another key was no guide (an ssd Server main after the Offline ones ran 41 s against the
    11 s taken from them, and its backgrounds ended before it).
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], float] = {}

    def observe(self, case: Case, seconds: float) -> None:
        key = (case.benchmark, case.scenario, case.mode)
        self.seen[key] = max(seconds, self.seen.get(key, 0.0))

    def expect(self, case: Case) -> float | None:
        key = (case.benchmark, case.scenario, case.mode)
        return self.seen.get(key)


def background_duration_ms(case: Case, settings: HeteroSettings) -> int:
    """How long backgrounds must stay in their timed phase to outlast the main (auto rule).

    Known main duration: 1.2x it plus the end buffer and a second (harnesses overshoot their
    min duration themselves: LoadGen Offline runs until its pre-sized query is done).
    Unknown: the startup allowance plus 1.5x the main's min duration plus the end buffer.
    """
    prof = case.run_profile
    if prof.background_min_duration_ms:
        return prof.background_min_duration_ms
    buffer_ms = prof.end_time_buffer_min_s * 1000
    rounds = max(1, settings.rounds)  # every round of the main runs under load
    if settings.expected_main_s is not None:
        return int(settings.expected_main_s * 1200 * rounds + buffer_ms + 1000)
    main_ms = prof.min_duration_ms * 1.5 * rounds if case.mode == PERFORMANCE else 0
    return int(main_ms + settings.main_startup_s * 1000 * rounds + buffer_ms)


def plan_workspecs(case: Case, slot: Slot, test_dir: Path,
                   settings: HeteroSettings) -> tuple[WorkSpec, list[tuple[WorkSpec, Partition]]]:
    """The main WorkSpec and each background's WorkSpec with the partition it runs on."""
    prof = case.run_profile
    main = WorkSpec(role="main", name="main", benchmark=case.benchmark, scenario=case.scenario,
                    mode=case.mode, min_duration_ms=prof.min_duration_ms,
                    min_query_count=prof.min_query_count, log_dir=test_dir / "main",
                    target_qps=prof.server_target_qps if case.scenario == "Server" else None,
                    sample_count=prof.sample_count, options=dict(case.harness_options))
    bg_ms = background_duration_ms(case, settings)
    backgrounds = []
    # NVIDIA's rule: backgrounds always run Offline, PerformanceOnly, min_query_count=1.
    for i, (bench, part) in enumerate(zip(case.background, slot.background), start=1):
        name = f"bg{i}-{bench}"
        spec = WorkSpec(role="background", name=name, benchmark=bench,
                        scenario=settings.background_scenario, mode=PERFORMANCE,
                        min_duration_ms=bg_ms, min_query_count=1, log_dir=test_dir / name,
                        sample_count=prof.sample_count, options=dict(case.harness_options))
        backgrounds.append((spec, part))
    return main, backgrounds


def env_for(partition: Partition, run_id: str) -> dict[str, str]:
    """The environment of a workload pinned to `partition` in run `run_id` (the run's marker,
    the partition's device and variables, the simulated-GPU flag where it applies)."""
    extra = {"CUDA_VISIBLE_DEVICES": partition.device_id, **partition.env,
             SLICE_ENV: f"{partition.kind}:{partition.profile}"}
    if partition.simulated:
        extra["PYTEST_MIG_SIMULATED_GPU"] = "1"
    return child_env(extra, run_id)


def run(case: Case, slot: Slot, harness: Harness, test_dir: Path, settings: HeteroSettings,
        progress=None, out: HeteroOutcome | None = None, pool=None,
        gpu_processes: Callable[[], list[int]] | None = None,
        baseline: HeteroOutcome | None = None) -> HeteroOutcome:
    """Run one case end to end; every child of the case is reaped before this returns.

    Pass `out` to keep what was learnt so far even when this raises (reports use it).
    With a `pool` (session lifetime) the backgrounds are the pool's: started once, kept
    running across cases, checked alive at this main's end; else they are per-test.
    `gpu_processes` (real NVML only) lists the pids of compute processes on the main's GPU;
    an isolated baseline samples it to show that only the main ran. `baseline`: this case's
    isolated baseline, already measured (measure_baseline) before the pool started.
    """
    say = progress or (lambda msg: None)
    test_dir.mkdir(parents=True, exist_ok=True)
    out = out or HeteroOutcome(case=case, test_dir=test_dir)
    out.lenient = settings.lenient
    main_work, bg_plan = plan_workspecs(case, slot, test_dir, settings)
    if pool is not None:
        bg_plan = pool.plan(case, slot, settings)
    out.background_min_duration_ms = bg_plan[0][0].min_duration_ms if bg_plan else 0
    bgs: list[tuple[WorkSpec, Workload]] = []
    if settings.isolated_baseline and baseline is not None:
        out.isolated, out.isolation = baseline.isolated, baseline.isolation
        out.commands.update(baseline.commands)
    elif settings.isolated_baseline:
        paused = pool.pause_gpu(slot.gpu_uuid, say) if pool is not None else 0
        out.isolation = {
            "method": ("session backgrounds of this GPU stopped for the baseline, restarted "
                       "after it" if pool is not None else
                       "run before this case's backgrounds were started"),
            "backgrounds_paused": paused}
        out.isolated = _run_isolated(main_work, slot, harness, test_dir, settings, out, say,
                                     gpu_processes)
    try:
        if pool is None:
            bgs = _start_backgrounds(bg_plan, harness, test_dir, settings, out)
            for i, (work, w) in enumerate(bgs, start=1):
                place(out, settings, i, work.name, w)
            say(f"{len(bgs)} background workload(s) started")
            await_ready(bgs, case.run_profile.start_time_buffer_s, say)
        else:
            bgs = pool.ensure(bg_plan, harness, settings, out, say)
            for i, (work, w) in enumerate(bgs, start=1):  # kept ones: same share again
                place(out, settings, i, work.name, w)
        out.phases["backgrounds_ready"] = time.time()
        # Exit codes say nothing of a stopped, frozen or stalled background: /proc does.
        watch = LivenessWatch([(work.name, w, work.log_dir) for work, w in bgs])
        try:
            _run_main(case, slot, harness, main_work, test_dir, settings, out, say)
        finally:
            watch.stop()
        overdue: dict[str, str] = {}
        if pool is None:
            overdue = _await_backgrounds_end(bgs, case, settings, out, say, watch)
            out.health = check_health(
                [(work.benchmark, w.finished()) for work, w in bgs], main=out.main,
                end_buffer_s=case.run_profile.end_time_buffer_min_s)
        else:
            out.health = pool.check(out.main, slot.gpu_uuid, frozenset(
                work.name for work, _ in bgs if watch.flagged(work.name)))
        main_start = out.phases.get("main_start")
        for h in out.health.workloads:
            extra = watch.problems(h.name, main_start) + ([overdue[h.name]] if h.name in overdue
                                                         else [])
            if extra:
                h.problems[:0] = extra
                h.healthy = False
        out.backgrounds = [w.finished() for _, w in bgs]
        out.slices = collect_slices(case, slot, harness, bgs, out)
        if settings.lenient and not out.health.healthy:
            out.warnings.extend(out.health.problems())
        say("health checked")
        return out
    finally:
        # Every path (pass, failure, error, Ctrl-C): no per-test child survives the case.
        if pool is None:  # all at once, one shared grace, bounded (process.stop_workloads)
            stop_workloads([w for _, w in bgs], grace=settings.stop_grace_s)
        if not out.backgrounds:
            out.backgrounds = [w.finished() for _, w in bgs]


def _start_backgrounds(bg_plan, harness: Harness, log_dir: Path, settings: HeteroSettings,
                       out: HeteroOutcome) -> list[tuple[WorkSpec, Workload]]:
    bgs: list[tuple[WorkSpec, Workload]] = []
    try:
        for work, part in bg_plan:
            spec = harness.launch(work, part, env_for(part, settings.run_id),
                                  log_dir / f"{work.name}.log")
            out.commands[work.name] = list(spec.argv)
            bgs.append((work, Workload(work.name, spec).start()))
    except BaseException:
        stop_workloads([w for _, w in bgs], grace=settings.stop_grace_s)
        raise
    out.phases["backgrounds_started"] = time.time()
    return bgs


def _run_main(case: Case, slot: Slot, harness: Harness, main_work: WorkSpec, test_dir: Path,
              settings: HeteroSettings, out: HeteroOutcome, say) -> None:
    """The main, `settings.rounds` times back to back under the same backgrounds (round k > 1
    logs to main-r<k>/); the result kept is the median round's, `out.rounds` holds them all."""
    n = max(1, settings.rounds)
    if n == 1:
        _run_main_once(case, slot, harness, main_work, test_dir, settings, out, say)
        return
    results: list[BenchmarkResult] = []
    first_start = None
    for k in range(1, n + 1):
        work = main_work if k == 1 else replace(main_work, log_dir=test_dir / f"main-r{k}")
        _run_main_once(case, slot, harness, work, test_dir, settings, out, say,
                       round_label=f"round {k}/{n}", log_name="main.log" if k == 1
                       else f"main-r{k}.log", command_name="main" if k == 1 else f"main-r{k}")
        first_start = first_start or out.phases["main_start"]
        if out.result is not None:
            results.append(out.result)
    out.phases["main_start"] = first_start
    values = [r.metric_value for r in results if r.metric_value is not None]
    if not values:
        return
    ordered = sorted(results, key=lambda r: r.metric_value if r.metric_value is not None
                     else float("inf"))
    median_result = ordered[(len(ordered) - 1) // 2]
    mid = statistics.median(values)
    out.rounds = {"n": n, "values": values, "median": mid, "min": min(values),
                  "max": max(values),
                  "spread_pct": (max(values) - min(values)) / abs(mid) * 100.0 if mid else None,
                  "kept": "median round" if len(values) % 2 else "lower middle round"}
    out.result = median_result
    say(f"main rounds: median {mid:.4g}, min {min(values):.4g}, max {max(values):.4g}")


def _run_main_once(case: Case, slot: Slot, harness: Harness, main_work: WorkSpec,
                   test_dir: Path, settings: HeteroSettings, out: HeteroOutcome, say,
                   round_label: str = "", log_name: str = "main.log",
                   command_name: str = "main") -> None:
    spec = harness.launch(main_work, slot.main, env_for(slot.main, settings.run_id),
                          test_dir / log_name)
    out.commands[command_name] = list(spec.argv)
    out.phases["main_start"] = time.time()
    say(f"main {case.benchmark} {case.scenario} {case.mode} running"
        + (f" ({round_label})" if round_label else ""))
    main = Workload("main", spec).start()
    place(out, settings, 0, "main", main, say)
    try:
        code = main.wait(timeout=settings.main_timeout_s)
    finally:
        main.stop(grace=settings.stop_grace_s)  # no-op when it already ended
    out.phases["main_end"] = main.ended_at or time.time()
    out.main = main.finished()
    if code is None:
        raise WorkloadFailure(f"main did not finish within {settings.main_timeout_s:.0f} s; "
                              + (f"{main.stuck}" if main.stuck else "stopped")
                              + f". log: {spec.log_path}")
    if code != 0:
        raise WorkloadFailure(f"main {case.benchmark} {case.scenario} "
                              f"{describe_death(code, _oom(code, main))}; "
                              f"log: {spec.log_path}\n--- last lines ---\n{main.tail_text()}")
    out.result = harness.collect(main_work, out.main, spec.result_dir)
    if out.result.harness_path.get("decode_line"):  # the LLM's decode and its roofline figure
        say(f"main {out.result.harness_path['decode_line']}")


OVERDUE_S = 15.0  # past a background's planned end: at least this long before it is stopped


def _oom(code: int | None, w: Workload) -> str:
    """The kernel's OOM record of a SIGKILLed workload, where readable."""
    return oom_record(w.pid) if code == -signal.SIGKILL and w.pid else ""


def _await_backgrounds_end(bgs, case: Case, settings: HeteroSettings, out: HeteroOutcome,
                           say, watch: LivenessWatch | None = None) -> dict[str, str]:
    """Classic hetero rule: backgrounds finish on their own, after the main, with exit 0.

    Each is waited for until its planned end (its ready line plus its min duration) plus
    OVERDUE_S or half its duration, whichever is more; a background the liveness watch found
    stopped, frozen or stalled is not waited for. Returns why each one stopped early was."""
    alive = [w for _, w in bgs if w.running()]
    if alive:
        say(f"waiting for {len(alive)} background workload(s) to finish")
    duration_s = out.background_min_duration_ms / 1000
    late: dict[str, str] = {}
    for work, w in bgs:
        planned = (w.ready_at or out.phases["main_start"]) + duration_s
        deadline = planned + max(OVERDUE_S, duration_s / 2)
        while w.running() and time.time() < deadline:
            if watch is not None and watch.flagged(work.name):
                break
            w.wait(timeout=min(0.25, max(0.0, deadline - time.time())))
        if w.running():
            if watch is None or not watch.flagged(work.name):
                late[work.name] = (
                    f"still running {time.time() - planned:.1f} s past its planned end (ready "
                    f"line + min duration {duration_s:g} s); stopped")
                say(f"background {work.name}: {late[work.name]}")
            w.stop(grace=settings.stop_grace_s)
    return late


def measure_baseline(case: Case, slot: Slot, harness: Harness, test_dir: Path,
                     settings: HeteroSettings, say,
                     gpu_processes: Callable[[], list[int]] | None = None) -> HeteroOutcome:
    """The isolated baseline of `case` alone, measured ahead of its test (nothing else of
    this run may be running on the GPU: the caller starts no background before it)."""
    test_dir.mkdir(parents=True, exist_ok=True)
    main_work, _ = plan_workspecs(case, slot, test_dir, settings)
    out = HeteroOutcome(case=case, test_dir=test_dir)
    out.isolation = {"method": "measured before the session backgrounds started "
                               "(baselines first)", "backgrounds_paused": 0}
    out.isolated = _run_isolated(main_work, slot, harness, test_dir, settings, out, say,
                                 gpu_processes)
    return out


def _run_isolated(main_work: WorkSpec, slot: Slot, harness: Harness, test_dir: Path,
                  settings: HeteroSettings, out: HeteroOutcome, say,
                  gpu_processes: Callable[[], list[int]] | None = None) -> BenchmarkResult:
    """The main alone on its partition (no neighbours): the baseline of the interference."""
    work = replace(main_work, name="main-isolated", log_dir=test_dir / "main-isolated")
    spec = harness.launch(work, slot.main, env_for(slot.main, settings.run_id),
                          test_dir / "main-isolated.log")
    out.commands[work.name] = list(spec.argv)
    say("isolated baseline: main alone")
    w = Workload(work.name, spec).start()
    watch = (_ProcessWatch(gpu_processes, w.pid, simulated=slot.simulated)
             if gpu_processes is not None else None)
    try:
        code = w.wait(timeout=settings.main_timeout_s)
    finally:
        if watch is not None:
            out.isolation.update(watch.finish())
        else:
            out.isolation["verified"] = None
            out.isolation["verification"] = ("not verifiable: no NVML process list "
                                             "(simulated GPU)")
        w.stop(grace=settings.stop_grace_s)
    if code != 0:
        raise WorkloadFailure(f"isolated baseline run {describe_death(code, _oom(code, w))}; "
                              f"log: {spec.log_path}"
                              f"\n--- last lines ---\n{w.tail_text()}")
    return harness.collect(work, w.finished(), spec.result_dir)


def await_ready(bgs: list[tuple[WorkSpec, Workload]], timeout_s: float, say) -> None:
    """Each background must print its ready line within the start buffer, or the case fails."""
    deadline = time.monotonic() + timeout_s
    for n, (work, w) in enumerate(bgs, start=1):
        if not w.wait_ready(max(0.0, deadline - time.monotonic())):
            # wait(), not poll(): poll() answers None while the waiter thread reaps the child.
            code = w.wait(timeout=1.0)
            if code is not None:
                why = f"exited with code {code} before it was ready"
            else:
                why = f"was not ready within start_time_buffer {timeout_s:g} s"
            raise WorkloadFailure(
                f"background {work.name} ({work.benchmark}) {why}; log: {w.spec.log_path}\n"
                f"--- last lines ---\n{w.tail_text()}")
        say(f"backgrounds ready {n}/{len(bgs)}")


def _process_tree(root: int) -> set[int]:
    """`root` and its descendants, read from /proc (children files, else a ppid scan)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[-1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return tree


def is_mps_server(comm: str) -> bool:
    """/proc/<pid>/comm of the MPS server: 'nvidia-cuda-mps-server' cut to 15 characters."""
    return "nvidia-cuda-mps-server".startswith(comm) and comm.startswith("nvidia-cuda-mps")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class _ProcessWatch:
    """Samples NVML's compute processes of the main's GPU while an isolated baseline runs.

    Verified when every pid NVML showed is the main's (or a child of it) or an MPS server;
    a pid that /proc cannot name (another pid namespace) makes it unverified, never passed.
    """

    def __init__(self, list_pids: Callable[[], list[int]], main_pid: int | None,
                 every_s: float = 0.5, simulated: bool = False) -> None:
        self.list_pids, self.main_pid, self.every_s = list_pids, main_pid, every_s
        self.simulated = simulated
        self.seen: dict[int, str] = {}
        self.samples = 0
        self.error = ""
        self.ours: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mig-isolation-watch",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pids = self.list_pids()
            except Exception as exc:  # NVML refused (permissions, driver): say so, stop
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.samples += 1
            if self.main_pid is not None:
                self.ours |= _process_tree(self.main_pid)
            for pid in pids:
                self.seen.setdefault(pid, _comm(pid))
            self._stop.wait(self.every_s)

    def finish(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=5)
        others = {pid: name for pid, name in self.seen.items()
                  if pid not in self.ours and not is_mps_server(name)}
        record = {"gpu_processes_seen": {str(k): v for k, v in sorted(self.seen.items())},
                  "samples": self.samples, "main_pids": sorted(self.ours)}
        if self.error:
            record.update(verified=None, verification=f"not verifiable: {self.error}")
        elif not self.samples:
            record.update(verified=None, verification="not verifiable: no sample taken")
        elif others:
            record.update(verified=False, verification=(
                "NVML saw compute processes other than the main: " + ", ".join(
                    f"{pid} ({name})" for pid, name in sorted(others.items()))))
        else:
            record.update(verified=True, verification=(
                f"only the main ran: {self.samples} NVML samples"))
        if self.simulated:
            record["verification"] += (" (SIMULATED GPU: its process list holds only the "
                                       "processes registered with the simulator)")
        return record


def collect_slices(case: Case, slot: Slot, harness: Harness,
                   bgs: list[tuple[WorkSpec, Workload]], out: HeteroOutcome) -> Aggregate:
    """Each background's LoadGen result parsed like the main's, its completions counted in the
    main's timed phase (ready line to exit), and the sums; never changes the case's outcome.
    Each is read where its harness adapter said it writes (LaunchSpec.result_dir), never
    where orchestration would guess (NVIDIA's backgrounds log under background_logs/)."""
    figures = [slice_figure("main", "main", case.benchmark, case.scenario, slot.main.profile,
                            out.result)]
    main = out.main
    start = (main.ready_at or main.started_at) if main else None
    end = main.ended_at if main else None
    for (work, w), part in zip(bgs, slot.background):
        result, error = None, None
        try:
            result = harness.collect(work, w.finished(), w.spec.result_dir)
        except Exception as exc:  # noqa: BLE001 - a background's figure is reported, not judged
            error = f"{work.name}: no result ({exc})"
        window = window_in_dir(w.spec.result_dir, start, end) if start and end else None
        figures.append(slice_figure(work.name, "background", work.benchmark, work.scenario,
                                    part.profile, result, window, error))
    isolated = {}
    if out.isolated is not None and out.isolated.metric_value and \
            is_throughput(out.isolated.metric_name):
        isolated[case.benchmark] = (out.isolated.metric_value, f"single slice {slot.main.profile}")
    return aggregate(figures, isolated)


def place(out: HeteroOutcome, settings: HeteroSettings, index: int, name: str, w: Workload,
          say=None) -> None:
    """Pin workload `index` of the GPU (0: main) to its CPU share; record what it got."""
    plan = settings.cpu_plan
    if plan is None or w.pid is None:
        return
    if not plan.pinning or index >= len(plan.shares):
        got = Placement(name, [], False, plan.note or "not pinned: no share for it")
    else:
        got = pin(w.pid, name, plan.shares[index])
    out.placement[name] = asdict(got)
    if say is not None and index == 0:
        say(plan.note if not plan.pinning else
            f"CPU placement ({plan.source}): " + "; ".join(
                f"{n} -> {','.join(map(str, p['cpus']))}" for n, p in out.placement.items()))
