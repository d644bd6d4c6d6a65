"""Run-wide state of one pytest-mig run: settings, run id and directory, GPU backend, suites.

Plain Python (no pytest import) so the plugin hooks stay thin and this stays testable.
Its collaborators are typed and its state changes through its own methods: hook objects
tell it what they learnt (record_collection, use_layouts, record_shard, hold_lease), and
it writes the run header (run.json) itself when its GPU backend opens.
Late imports (docs/architecture.md, start-up cost): the GPU backend, the suite parser, MPS,
session backgrounds, leases, the duration estimator.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pytest_mig.errors import ConfigError
from pytest_mig.gpu.probe import nvml_library_loads
from pytest_mig.orchestration.process import RUN_MARKER, announce, reap_orphans, sweep_escaped
from pytest_mig.runid import is_real_dir, make_run_dir, new_key, new_run_id  # noqa: F401
from pytest_mig.run.settings import Settings
from pytest_mig.types import Case

if TYPE_CHECKING:
    from pytest_mig.gpu.leases import GpuLease
    from pytest_mig.gpu.mps import MpsDaemon
    from pytest_mig.gpu.nvml import Nvml
    from pytest_mig.gpu.slots import SlotProblem
    from pytest_mig.gpu.topology import Topology
    from pytest_mig.orchestration.background import BackgroundPool
    from pytest_mig.orchestration.hetero_run import DurationEstimator, HeteroOutcome
    from pytest_mig.plan.suite import Suite


@runtime_checkable
class LayoutPreparer(Protocol):
    """The seam between a case's slot (case_fixtures.py) and the run's MIG layouts: given the
    leased GPU, reach the case's layout or say why the case is skipped. Implemented by
    layout_manager.LayoutManager; `MigSession.manager` holds it (manage_hooks.py hands it
    over with MigSession.use_layouts)."""

    def prepare(self, index: int, case: Case) -> SlotProblem | None: ...


def safe_name(text: str) -> str:
    """A test id as a directory name: no slashes, brackets or spaces."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:180] or "test"


class MigSession:
    """Lazily opens the GPU backend: unit-test runs that never use a case never touch NVML."""

    def __init__(self, settings: Settings, run_id: str, rootdir: Path, key: str | None = None,
                 worker: bool = False) -> None:
        self.settings = settings
        self.run_id = run_id
        self.key = key or new_key()  # every workload of the run carries it (process.py)
        self.worker = worker  # an xdist worker uses the folder its controller made
        self._made = False
        reports = settings.reports if settings.reports.is_absolute() else rootdir / settings.reports
        self.reports_root = reports
        self.run_dir = reports / run_id
        self._nvml: Nvml | None = None
        self._topology: Topology | None = None
        self.suites: dict[Path, Suite] = {}
        self.mps_daemons: dict[str, MpsDaemon] = {}
        self.pool: BackgroundPool | None = None  # for session-lifetime backgrounds
        self.held_lease: GpuLease | None = None  # kept across tests while session backgrounds run
        self._durations: DurationEstimator | None = None
        # --mig-isolated-baseline with session backgrounds: baselines measured before the
        # pool started (case id -> HeteroOutcome holding them); test names already tried.
        self.baselines: dict[str, HeteroOutcome] = {}
        self.baselines_done: set[str] = set()
        self.manager: LayoutPreparer | None = None  # each case's MIG layout (use_layouts)
        self.shard: dict[str, object] | None = None  # --mig-shard: this shard (record_shard)
        self.write_errors: list[str] = []  # report files that could not be written (one line)
        # How many cases this run selected (the controller after collection; None: unknown,
        # e.g. an xdist controller, which does not collect). 0: nothing is reported and the
        # run folder is removed at the end (discard_empty_run).
        self.selected_cases: int | None = None
        self.collected_case_ids: list[str] = []  # every case id collected, before -k/-m

    @property
    def durations(self) -> DurationEstimator:
        """How long this process's main runs took (sizes backgrounds); made at the first case:
        orchestration/hetero_run.py (orchestration, harnesses, result parsers) is not needed to
        collect."""
        if self._durations is None:
            from pytest_mig.orchestration.hetero_run import DurationEstimator
            self._durations = DurationEstimator()
        return self._durations

    def ensure_run_dir(self) -> Path:
        """The run folder: made exclusively (a fresh id if the name exists, even as a
        symlink) by the controller; a worker joins its controller's real folder."""
        if self._made:
            return self.run_dir
        if self.worker:
            self.reports_root.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.run_dir)
            except FileExistsError:
                pass
            if not is_real_dir(self.run_dir):
                raise ConfigError(f"{self.run_dir}: the run folder is not a plain folder (a "
                                  "symlink?); pytest-mig writes only into folders it made")
        else:
            self.run_id, self.run_dir = make_run_dir(self.reports_root, self.run_id, self.key)
            os.environ[RUN_MARKER] = self.run_id
        self._made = True
        return self.run_dir

    @property
    def nvml(self):
        """The GPU backend, opened at first use (then run.json is written: the run header)."""
        if self._nvml is None:
            # start-up: the NVML wrapper, pynvml and the simulator load only when a run opens
            # its backend (the first case, or the run header), never to collect.
            from pytest_mig.gpu.backend import open_backend
            self.ensure_run_dir()
            os.environ.setdefault(RUN_MARKER, self.run_id)
            self._nvml = open_backend(
                self.settings.backend, state_path=self.run_dir / "simulated-gpu.json",
                sim_model=self.settings.sim_gpu, sim_gpus=self.settings.sim_gpus)
            self.write_run_header()
        return self._nvml

    def write_run_header(self) -> None:
        """run.json, the run header: written by each process when it opens the GPU backend (so
        by the first case whatever the verbosity), replaced atomically. A write that fails
        is one line on the terminal and in write_errors (the run's exit status says so)."""
        from pytest_mig.io import write_json_atomic
        from pytest_mig.report.files import write_problem
        from pytest_mig.report.header import run_header
        path = self.ensure_run_dir() / "run.json"
        try:
            write_json_atomic(path, run_header(self))
        except OSError as exc:
            line = write_problem(path, exc)
            self.write_errors.append(line)
            announce(line)

    # -- what the hook objects tell the run --------------------------------------------------
    def record_collection(self, case_ids: list[str]) -> None:
        """Every case id collected, before -k/-m deselect (the zero-selection hint)."""
        self.collected_case_ids = list(case_ids)

    def record_selection(self, count: int) -> None:
        """How many cases this run selected (0: nothing is reported, the folder goes)."""
        self.selected_cases = count

    def use_layouts(self, manager: LayoutPreparer) -> None:
        """The run's MIG layouts (--mig-manage/--mig-layout): each case's slot asks it."""
        self.manager = manager

    def record_shard(self, info: dict[str, object]) -> None:
        """This process runs one shard (--mig-shard): the run header names it."""
        self.shard = dict(info)

    def hold_lease(self, lease: GpuLease) -> None:
        """Keep a GPU lease until session end: session backgrounds live on that GPU."""
        self.held_lease = lease

    @property
    def backend_open(self) -> bool:
        return self._nvml is not None

    def surely_simulated(self) -> bool:
        """True when this run will simulate whatever opening its backend finds: asked for
        (--mig-backend=simulated), or auto where no NVML library loads (gpu/probe.py)."""
        if self.settings.backend == "simulated":
            return True
        return self.settings.backend == "auto" and not nvml_library_loads()

    def topology(self, refresh: bool = False):
        if self._topology is None or refresh:
            self._topology = self.nvml.topology()
        return self._topology

    @property
    def simulated(self) -> bool:
        return self.topology().backend == "simulated"

    def gpu_model(self) -> str:
        """Model key of the GPUs of this run (the first GPU's; mixed hosts use the first).

        A run that will surely simulate (--mig-backend=simulated, or auto with no NVML
        library) knows its model from --mig-sim-gpu: collection opens no backend.
        """
        if self._nvml is None and self.surely_simulated():
            return self.settings.sim_gpu
        topo = self.topology()
        if not topo.gpus:
            return "none"
        gpu = topo.gpus[0]
        return gpu.model_key or gpu.name

    def suite(self, path: Path):
        path = path.resolve()
        if path not in self.suites:
            from pytest_mig.plan.suite import load_suite
            self.suites[path] = load_suite(path)
        return self.suites[path]

    def partition_kind(self, gpu) -> str:
        """auto = MIG instances when MIG is on, else the reason-giving MIG path (a skip)."""
        return "mig" if self.settings.partition == "auto" else self.settings.partition

    def mps_pipe(self, gpu) -> Path:
        """Start (once) the MPS control daemon for `gpu`; clients find it by this pipe dir."""
        from pytest_mig.gpu.mps import MpsDaemon
        if gpu.uuid not in self.mps_daemons:
            daemon = MpsDaemon(self.ensure_run_dir(), gpu.uuid)
            self.mps_daemons[gpu.uuid] = daemon
            daemon.start()
        return self.mps_daemons[gpu.uuid].pipe_dir

    def lifetime(self, case) -> str:
        """--mig-background, else per-test for submission runs (MLPerf's rule), else the suite's."""
        if self.settings.background:
            return self.settings.background
        if case.run_profile.name == "submission":
            return "per-test"
        return case.background_lifetime

    def background_pool(self):
        if self.pool is None:
            from pytest_mig.orchestration.background import BackgroundPool
            self.pool = BackgroundPool(self.ensure_run_dir() / "session-backgrounds")
        return self.pool

    def stop_session_backgrounds(self, interrupted: str = ""):
        """Stop and check session backgrounds; returns their HealthReport (None if none ran).
        `interrupted` names what interrupted the run ('SIGTERM', 'SIGINT'), if anything."""
        if self.pool is None:
            return None
        report = self.pool.stop_all(interrupted=interrupted)
        if self.held_lease is not None:
            self.held_lease.release()
            self.held_lease = None
        return report

    def close(self, launched: bool = True) -> None:
        """Stop what the run started at session level (backgrounds, MPS daemons) and what a
        killed xdist worker of this run left running; idempotent. `launched=False` (a
        collect-only run: no workload was started) skips the scans of /proc for leftovers."""
        self.stop_session_backgrounds()
        for daemon in self.mps_daemons.values():
            daemon.stop()
        self.mps_daemons.clear()
        if launched and self.run_dir.exists():
            self.reap_orphans()
            self.sweep()

    # What a run that ran no case leaves in its folder: its key, the header, the simulator.
    EMPTY_RUN_FILES = frozenset({"run.key", "run.json", "simulated-gpu.json",
                                 "simulated-gpu.json.lock", "locks"})

    def discard_empty_run(self) -> bool:
        """Remove the run folder of a run that ran no case (-k matching nothing, --co): only
        when it holds nothing but what the start of a run writes; True when removed."""
        import shutil
        if self.worker or not self._made or not is_real_dir(self.run_dir):
            return False
        names = {p.name for p in self.run_dir.iterdir()}
        if not names <= self.EMPTY_RUN_FILES:
            return False
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return not self.run_dir.exists()

    def sweep(self, everyone: bool = False) -> list[str]:
        """Kill what this process's stopped workloads left running (escaped descendants:
        a setsid'd grandchild ignoring SIGTERM); `everyone`: any process of the run. Each
        is noted in orphans.log; returns their descriptions."""
        killed = sweep_escaped(self.run_id, self.key, None if everyone else os.getpid())
        if killed and self.run_dir.exists():
            try:
                with open(self.run_dir / "orphans.log", "a", encoding="utf-8") as fh:
                    for text in killed:
                        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} killed escaped "
                                 f"process {text}\n")
            except OSError:
                pass
        return killed

    def reap_orphans(self) -> list[tuple[int, str]]:
        """Kill this run's workloads whose pytest process died; each noted in orphans.log."""
        reaped = reap_orphans(self.run_id, self.key)
        if reaped:
            with open(self.run_dir / "orphans.log", "a", encoding="utf-8") as fh:
                for pid, _ in reaped:
                    fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} killed workload pid {pid}: "
                             "the pytest process that started it (an xdist worker) died\n")
        return reaped

    def lock_dir(self) -> Path:
        if self.simulated:  # a simulated GPU belongs to this run alone
            return self.ensure_run_dir() / "locks"
        from pytest_mig.gpu.leases import state_dir
        return state_dir() / "locks"

    def test_dir(self, test_id: str) -> Path:
        return self.ensure_run_dir() / safe_name(test_id)
