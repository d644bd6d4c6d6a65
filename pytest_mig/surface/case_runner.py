"""What a case does once it runs (the fixtures' bodies): lease a slot on one GPU, run the
main with its backgrounds (`hetero.run`), record its properties and progress.

Rules:
- case_fixtures.py imports this module only when a case runs (docs/architecture.md,
  start-up cost).
- Orchestration happens in orchestration/hetero_run.py; this module turns pytest's request
  into its inputs and its outcome into pytest's (skips, warnings, properties, report
  sections).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytest

from pytest_mig.orchestration import hetero_run as hetero_mod
from pytest_mig.orchestration.dryrun import plan_text
from pytest_mig.gpu import affinity, leases
from pytest_mig.gpu.slots import SlotProblem, build_layout_slot, build_shared_slot, build_slot
from pytest_mig.surface.keys import OUTCOME_KEY
from pytest_mig.report import allure_report
from pytest_mig.report.junit import case_properties
from pytest_mig.report.records import outcome_record
from pytest_mig.report.busy import busy_warning
from pytest_mig.report.timeline import case_timeline
from pytest_mig.results.slices import unread_slices
from pytest_mig.run.state import MigSession
from pytest_mig.plan.suite import background_cut, layout_fill, resolve_background
from pytest_mig.types import Case, Slot


def leased_slot(mig_session: MigSession, mig_case: Case) -> Iterator[Slot]:
    """Lease a whole GPU (xdist-safe) and carve main + background partitions from it; the
    lease is released after the yield (kept when session backgrounds live on the GPU)."""
    topo = mig_session.topology(refresh=True)
    wanted = mig_case.profile
    by_uuid = {g.uuid: g for g in topo.gpus}

    def has_profile(uuid: str) -> bool:
        g = by_uuid[uuid]
        return any(i.profile == wanted for i in topo.instances.get(g.index, []))

    session_bg = mig_session.lifetime(mig_case) == "session"
    lease = mig_session.held_lease if session_bg else None
    if lease is None:
        lease = leases.acquire(list(by_uuid), mig_session.lock_dir(),
                               mig_session.settings.lease_timeout_s, prefer=has_profile)
        if session_bg:  # session backgrounds live on this GPU: keep it until session end
            mig_session.hold_lease(lease)
    try:
        topo = mig_session.topology(refresh=True)
        gpu = next(g for g in topo.gpus if g.uuid == lease.gpu_uuid)
        simulated = topo.backend == "simulated"
        kind = mig_session.partition_kind(gpu)
        if kind == "mig" and mig_session.manager is not None and not mig_session.settings.dry_run:
            # --mig-manage: reach the case's layout; without it, skip saying how to get it.
            problem = mig_session.manager.prepare(gpu.index, mig_case)
            if problem is not None:
                pytest.skip(problem.reason)
            topo = mig_session.topology(refresh=True)
            gpu = next(g for g in topo.gpus if g.uuid == lease.gpu_uuid)
        if mig_case.layout:  # a layout suite's case: one partition per instance of it
            pipe = mig_session.mps_pipe(gpu) if kind == "mps" else None
            slot = build_layout_slot(gpu, kind, topo.instances.get(gpu.index, []),
                                     mig_case.layout, wanted, simulated, mig_case.gpu_model,
                                     pipe)
        elif kind == "mig":
            slot = build_slot(gpu, topo.instances.get(gpu.index, []), wanted,
                              simulated=simulated, gpu_model=mig_case.gpu_model)
        else:
            pipe = mig_session.mps_pipe(gpu) if kind == "mps" else None
            slot = build_shared_slot(gpu, kind, wanted, simulated, mig_case.gpu_model, pipe)
        if isinstance(slot, SlotProblem):
            pytest.skip(slot.reason)
        yield slot
    finally:
        if lease is not mig_session.held_lease:
            lease.release()


class HeteroRunner:
    """What a test body calls: `outcome = hetero.run(mig_case)`."""

    def __init__(self, request, session: MigSession, slot, harness) -> None:
        self.request, self.session, self.slot, self.harness = request, session, slot, harness

    def run(self, case: Case) -> hetero_mod.HeteroOutcome:
        requested = case.background_requested or case.background
        case = self._effective(case)
        # The count the collection-time warning gives too: the backgrounds that fit.
        cut = background_cut(requested, case.background, case.benchmark, len(case.background))
        if cut:  # never silent: a case property, a warning, a line in the record
            self.request.node.user_properties.append(("mig_background_cut", cut))
            warnings.warn(pytest.PytestWarning(f"pytest-mig: {case.id}: {cut}"), stacklevel=2)
        s = self.session.settings
        settings = self._settings(case)
        test_dir = self.session.test_dir(self.request.node.name)
        if s.dry_run:
            self._dry_run(case, test_dir, settings)
        out = hetero_mod.HeteroOutcome(case=case, test_dir=test_dir)
        if cut:
            out.warnings.append(cut)
        self.request.node.stash[OUTCOME_KEY] = out
        say = _progress(self.request, test_dir, case.id)
        say("starting")
        try:
            with case_timeline(s.sample_interval_s, self.session, self.slot, out,
                               progress=say):
                pool = (self.session.background_pool()
                        if self.session.lifetime(case) == "session" else None)
                if pool is not None and s.isolated_baseline:
                    self._baselines_first(case, pool, say)
                hetero_mod.run(case, self.slot, self.harness, test_dir, settings, progress=say,
                               out=out, pool=pool, gpu_processes=self._gpu_processes(),
                               baseline=self.session.baselines.pop(case.id, None))
            if out.main is not None and out.main.ended_at:
                self.session.durations.observe(case, out.main.ended_at - out.main.started_at)
            if out.baseline_untrusted:  # never silent: terminal, record, JUnit, Allure, HTML
                _warn(out, f"untrusted baseline: {out.baseline_untrusted}; interference not "
                           "reported (results.json: interference_untrusted)")
            for text in unread_slices(out.slices):  # never silent, as above
                _warn(out, text)
            host_bound = busy_warning(out.gpu_busy, s.min_busy_pct)
            if host_bound:  # --mig-require-busy fails it in surface/report_hooks.py (a passed case)
                _warn(out, host_bound)
        finally:
            say.done()
            for f in ([out.main] if out.main else []) + list(out.backgrounds):
                if f.log_error:  # a log cut short (disk full, file-size limit): never silent
                    _warn(out, f"{f.name}: log cut short: {f.log_error}")
            _record_properties(self.request.node, out, self.session)
            allure_report.describe(self.request.config, out, self.session, slot=self.slot)
        return out


    def _effective(self, case: Case) -> Case:
        """The case as it runs here: backgrounds cut to this slot, CLI overrides applied."""
        if case.layout:  # every instance of the layout runs a workload of the mix
            case = replace(case, background=layout_fill(case.background_requested,
                                                        len(self.slot.background)))
        else:  # NVIDIA's rule again, on the instances this GPU really has free.
            case = replace(case, background=resolve_background(
                list(case.background), case.benchmark, len(self.slot.background)))
        if self.session.settings.min_duration_ms is not None:
            case = replace(case, run_profile=replace(
                case.run_profile, min_duration_ms=self.session.settings.min_duration_ms))
        return case

    def _settings(self, case: Case) -> hetero_mod.HeteroSettings:
        s = self.session.settings
        return hetero_mod.HeteroSettings(
            run_id=self.session.run_id, main_startup_s=s.main_startup_s,
            main_timeout_s=s.main_timeout_s, lenient=s.lenient,
            expected_main_s=self.session.durations.expect(case),
            isolated_baseline=s.isolated_baseline, rounds=s.rounds,
            cpu_plan=_cpu_plan(self.session, self.slot, case))

    def _baselines_first(self, case: Case, pool, say) -> None:
        """Session backgrounds + isolated baselines, one pytest process: before this GPU's
        pool starts, measure the baselines of every case this process will run on the same
        kind of slot, so the pool starts once instead of pausing for each case. Under xdist
        (cases spread at run time) each case pauses the pool instead (hetero.run)."""
        if (hasattr(self.request.config, "workerinput") or case.id in self.session.baselines
                or pool.running.get(self.slot.gpu_uuid)):
            return
        items = [i for i in self.request.session.items
                 if "mig_case" in getattr(getattr(i, "callspec", None), "params", {})]
        todo = []
        for item in items:
            other = item.callspec.params["mig_case"]
            if (other.profile, other.gpu_model) != (case.profile, case.gpu_model):
                continue
            if self.session.lifetime(other) != "session" or other.id in self.session.baselines:
                continue
            if item.name in self.session.baselines_done:
                continue
            todo.append((item.name, self._effective(other)))
        if len(todo) > 1:
            say(f"isolated baselines first: {len(todo)} case(s) before the session backgrounds "
                "start")
        for name, other in todo:
            self.session.baselines_done.add(name)
            try:
                self.session.baselines[other.id] = hetero_mod.measure_baseline(
                    other, self.slot, self.harness, self.session.test_dir(name),
                    self._settings(other), say, self._gpu_processes())
            except hetero_mod.WorkloadFailure as exc:
                say(f"baseline of {other.id} failed; it is measured again in its own test: "
                    f"{str(exc).splitlines()[0]}")

    def _gpu_processes(self):
        """NVML's compute pids on this slot's GPU (the simulator lists the processes
        registered with it: a test plants a neighbour there)."""
        nvml, uuid = self.session.nvml, self.slot.gpu_uuid
        return lambda: nvml.device_processes(uuid)

    def _dry_run(self, case: Case, test_dir, settings) -> None:
        """--mig-dry-run: every command with its environment, as NVIDIA's --dryrun; no run."""
        text = plan_text(case, self.slot, self.harness, test_dir, settings)
        test_dir.mkdir(parents=True, exist_ok=True)
        (test_dir / "plan.txt").write_text(text)
        self.request.node.add_report_section("call", "mig dry run", text)
        # At any verbosity: a dry run is asked for to be read (under xdist the report section
        # carries it to the controller's summary).
        tr = self.request.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.request.config.pluginmanager.get_plugin("capturemanager")
        if tr is not None and not hasattr(self.request.config, "workerinput"):
            with capman.global_and_fixture_disabled():
                tr.write_line("")
                tr.write_line(text)
        pytest.skip(f"dry run: {len(text.splitlines())} plan lines in {test_dir / 'plan.txt'}")


STATUS_AFTER_S = 10.0  # a case still running after this many seconds shows its status


class _Status:
    """The live one-line status of a case at the default verbosity: `mig <case>: <phase>
    [<elapsed>s]` for each phase reached once the case has run STATUS_AFTER_S, overwriting
    itself on a TTY, one plain line per phase otherwise; silent under -q and in xdist
    workers; -v prints every progress line instead (_progress)."""

    def __init__(self, request, case_id: str) -> None:
        config = request.config
        self.tr = config.pluginmanager.get_plugin("terminalreporter")
        self.capman = config.pluginmanager.get_plugin("capturemanager")
        self.on = (self.tr is not None and config.getoption("verbose") == 0
                   and not hasattr(config, "workerinput"))
        self.tty = bool(self.on and self.tr.isatty)
        self.case_id = case_id
        self.shown = False

    def show(self, elapsed: float, msg: str) -> None:
        if not self.on or elapsed < STATUS_AFTER_S:
            return  # a quick case keeps pytest's line of dots whole
        line = f"    mig {self.case_id}: {msg} [{elapsed:.0f}s]"
        with self.capman.global_and_fixture_disabled():
            if self.tty:
                if not self.shown:
                    self.tr.ensure_newline()
                width = max(20, self.tr._tw.fullwidth - 1)
                self.tr.rewrite(line[:width], erase=True)
            else:
                self.tr.ensure_newline()
                self.tr.write_line(line)
            self.shown = True
            # pytest writes the next result on a fresh line headed by its file again
            self.tr.currentfspath = None

    def clear(self) -> None:
        if self.on and self.shown and self.tty:
            with self.capman.global_and_fixture_disabled():
                self.tr.rewrite("", erase=True)
                self.tr.currentfspath = None


def _progress(request, test_dir, case_id: str = ""):
    """Progress lines: always into progress.log; with -v every line on the terminal, at the
    default verbosity one live status line (_Status); none under -q or xdist. `say.done()`
    clears the live line at the end of the case."""
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    verbose = request.config.getoption("verbose") > 0 and not hasattr(request.config, "workerinput")
    status = _Status(request, case_id)
    log = test_dir / "progress.log"
    t0 = time.monotonic()

    def say(msg: str) -> None:
        elapsed = time.monotonic() - t0
        line = f"[{elapsed:6.1f}s] {msg}"
        try:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # disk full: progress still reaches the terminal; the record names the loss
        if verbose and tr is not None:
            capman = request.config.pluginmanager.get_plugin("capturemanager")
            # Output capture owns fd 1 during a test: step around it for live progress.
            with capman.global_and_fixture_disabled():
                tr.write_line(f"    mig {line}")
        else:
            status.show(elapsed, msg)
    say.done = status.clear  # type: ignore[attr-defined]
    return say


def _warn(out: hetero_mod.HeteroOutcome, text: str) -> None:
    """A case warning: in the record (`warnings`) and pytest's warnings summary."""
    out.warnings.append(text)
    warnings.warn(pytest.PytestWarning(f"pytest-mig: {out.case.id}: {text}"), stacklevel=3)


def _record_properties(node, out: hetero_mod.HeteroOutcome, session: MigSession) -> None:
    """JUnit <property> entries (report/junit.py): figures as numbers, units apart."""
    record = outcome_record(out, "", "", node.nodeid)
    node.user_properties.extend(case_properties(record, session.reports_root, session.simulated))


def _cpu_plan(session, slot, case: Case):
    """CPU shares of this GPU's workloads (--mig-cpu-pinning=auto|off); gpu/affinity.py.
    The workloads are the main and the backgrounds this case runs (not every free slice)."""
    api = getattr(getattr(session, "nvml", None), "api", None)
    workloads = 1 + min(len(case.background), len(slot.background))
    return affinity.plan(api, slot.gpu_index, workloads, session.settings.cpu_pinning != "off")
