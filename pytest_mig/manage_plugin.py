"""--mig-manage and --mig-layout: each case's MIG layout reached (or its absence explained),
cases ordered by layout, reconfigurations counted, and this run's instances removed at the end.

`LayoutManager` holds the run's state and no pytest; `ManagePlugin` is the thin hook object.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from pytest_mig.errors import MigError
from pytest_mig.gpu.ownership import Owner
from pytest_mig.types import Case

if TYPE_CHECKING:
    from pytest_mig.gpu.layouts import Layout
    from pytest_mig.gpu.manage import CleanupReport
    from pytest_mig.gpu.ownership import OwnershipStore
    from pytest_mig.gpu.slots import SlotProblem

# The GPU-management modules (gpu.manage, planner, layouts, leases) load where they are used:
# a run without --mig-manage/--mig-layout needs them only when a case runs.

EVENTS_DIR = "mig-manage"  # one file per process (xdist worker or the only one)
SUMMARY_FILE = "mig-manage.json"


def add_options(parser) -> None:
    g = parser.getgroup("mig")
    g.addoption("--mig-manage", action="store_true", default=False,
                help="create each case's MIG layout (GPU + compute instances) and destroy only "
                     "the instances this run created at the end; never changes MIG mode")
    g.addoption("--mig-layout", default=None, metavar="FILE:NAME",
                help="MIG layout for every case, in mig-parted's format: FILE:NAME, or NAME "
                     "from data/layouts/ (default: the case's profile + background fill)")


class LayoutManager:
    """One process's view: wanted layouts, applying them, the events it saw."""

    def __init__(self, session, manage: bool, layout: Layout | None, owner: Owner,
                 worker: str = "main", run_hint: str = "pytest") -> None:
        self.session, self.manage, self.layout, self.owner = session, manage, layout, owner
        self.worker, self.run_hint = worker, run_hint
        self.events: list[dict[str, Any]] = []
        self._cleanup: CleanupReport | None = None
        self._models: dict[int, Any] = {}
        self._checked: set[str] = set()  # GPUs whose crashed-run leftovers were looked for

    @property
    def nvml(self):
        return self.session.nvml

    @property
    def cleanup(self) -> CleanupReport:
        if self._cleanup is None:
            from pytest_mig.gpu.manage import CleanupReport
            self._cleanup = CleanupReport()
        return self._cleanup

    def store(self) -> OwnershipStore:
        from pytest_mig.gpu.ownership import OwnershipStore, store_path
        topo = self.session.topology()
        return OwnershipStore(store_path(topo.state_path if topo.simulated else None))

    def model(self, index: int):
        if index not in self._models:
            from pytest_mig.gpu.manage import live_model
            self._models[index] = live_model(self.nvml, index)
        return self._models[index]

    def layout_for(self, case: Case) -> Layout | None:
        """The layout a case runs under: its own (a layout suite's case), else --mig-layout."""
        if case.layout:
            from pytest_mig.gpu.layouts import cached_layout
            return cached_layout(case.layout)
        return self.layout

    def wanted(self, gpu, case: Case) -> dict[str, int] | str:
        """The case's layout on `gpu`, or why the --mig-layout has none for it."""
        from pytest_mig.gpu.planner import describe_request, plan_case
        layout = self.layout_for(case)
        if layout is None:
            return plan_case(self.model(gpu.index), case.profile, len(case.background))
        where = f"layout '{layout.name}' ({layout.source})"
        wanted = layout.for_gpu(gpu.index, gpu.pci_device_id)
        if wanted is None:
            return (f"{where} has no MIG devices for GPU {gpu.index} ({gpu.label}, PCI device "
                    f"id 0x{gpu.pci_device_id:08X}): add an entry with mig-enabled: true and "
                    f"devices: all (or [{gpu.index}])")
        if not wanted.get(case.profile):
            return (f"{where} has no {case.profile} instance for the main of {case.id} on GPU "
                    f"{gpu.index} (it has {describe_request(self.model(gpu.index), wanted)}); "
                    f"add \"{case.profile}\" to its mig-devices")
        return wanted

    def prepare(self, index: int, case: Case) -> SlotProblem | None:
        """Called with GPU `index` leased: reach the case's layout, or say why it is skipped."""
        from pytest_mig.gpu.manage import (apply_layout, clean_stale, gpu_instances, layout_problem,
                                           mig_disabled_text)
        from pytest_mig.gpu.planner import describe_request
        from pytest_mig.gpu.slots import SlotProblem
        gpu = self.nvml.gpu(index)
        if not gpu.mig_current:
            return SlotProblem(mig_disabled_text(gpu))
        wanted = self.wanted(gpu, case)
        if isinstance(wanted, str):
            return SlotProblem(wanted)
        if not self.manage:
            # Without a --mig-layout a case needs only its main profile (backgrounds fit
            # the instances there are); with one, the whole layout.
            need = wanted if self.layout_for(case) is not None else {case.profile: 1}
            gis = gpu_instances(self.nvml.instances(index))
            why = layout_problem(gpu, self.model(index), gis, need, wanted, self.run_hint)
            return None if why is None else SlotProblem(why)
        store = self.store()
        if gpu.uuid not in self._checked:
            self._checked.add(gpu.uuid)
            self.cleanup.extend(clean_stale(self.nvml, store, [gpu.uuid]))
        result = apply_layout(self.nvml, index, wanted, store, self.owner)
        self.events.append({
            "case": case.id, "gpu": index, "gpu_uuid": gpu.uuid, "worker": self.worker,
            "owner_pid": self.owner.pid,
            "layout": f"{gpu.label}: {describe_request(self.model(index), wanted)}",
            "reconfigured": result.changed, "time": time.time(),
            "created": [r.describe() for r in result.created],
            "destroyed": [r.describe() for r in result.destroyed],
            "reused": [g.describe() for g in result.reused]})
        return None

    @contextlib.contextmanager
    def _lease(self, gpu_uuid: str) -> Iterator[object]:
        from pytest_mig.gpu import leases
        lease = leases.acquire([gpu_uuid], self.session.lock_dir(),
                               self.session.settings.lease_timeout_s)
        try:
            yield lease
        finally:
            lease.release()

    def finish(self) -> CleanupReport:
        """At the run's end (one process): destroy this run's instances, then any leftovers."""
        from pytest_mig.gpu.manage import clean_stale, teardown
        store = self.store()
        report = teardown(self.nvml, store, self.owner.run_id, hold=self._lease)
        report.extend(clean_stale(self.nvml, store, hold=self._lease))
        return report

    def write_events(self, run_dir: Path) -> None:
        out = run_dir / EVENTS_DIR
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / f"{self.worker}.json", {"events": self.events,
                                                  "cleanup": self.cleanup.lines()})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def summarise(run_dir: Path, owner: Owner, teardown_report: CleanupReport,
              ownership_file: Path) -> dict[str, Any]:
    """Merge every process's events into reports/<run-id>/mig-manage.json."""
    events, cleanup = [], []
    for f in sorted((run_dir / EVENTS_DIR).glob("*.json")):
        data = json.loads(f.read_text(encoding="utf-8"))
        events += data["events"]
        cleanup += data["cleanup"]
    events.sort(key=lambda e: e["time"])
    layouts = sorted({e["layout"] for e in events})
    summary = {
        "run_id": owner.run_id,
        "owner": {"pid": owner.pid, "boot_id": owner.boot_id},
        "reconfigurations": sum(1 for e in events if e["reconfigured"]),
        "optimal": len(layouts),
        "layouts": layouts,
        "events": events,
        "crashed_run_cleanup": cleanup,
        "teardown": {"destroyed": teardown_report.destroyed,
                     "forgotten": teardown_report.forgotten,
                     "refused": teardown_report.refused},
        "ownership_file": str(ownership_file),
    }
    _write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    n, m = summary["reconfigurations"], summary["optimal"]
    lines = [f"pytest-mig: {n} MIG reconfiguration(s) (optimal: {m} distinct layouts)"]
    lines += [f"pytest-mig: crashed-run cleanup: {x}" for x in summary["crashed_run_cleanup"]]
    t = summary["teardown"]
    if t["destroyed"]:
        lines.append(f"pytest-mig: destroyed the {len(t['destroyed'])} MIG instance(s) this run "
                     "created")
    lines += [f"pytest-mig: teardown: {x}" for x in t["forgotten"]]
    lines += [f"pytest-mig: teardown kept an instance: {x}" for x in t["refused"]]
    return lines


class ManagePlugin:
    """Hooks for --mig-manage / --mig-layout; registered by pytest_mig.plugin."""

    def __init__(self, config, session) -> None:
        self.config, self.session = config, session
        self.manage = bool(config.getoption("mig_manage"))
        spec = config.getoption("mig_layout")
        try:
            layout = None
            if spec:
                from pytest_mig.gpu.layouts import resolve_layout
                layout = resolve_layout(spec)
        except MigError as exc:
            raise pytest.UsageError(f"--mig-layout {spec}: {exc}") from None
        worker = getattr(config, "workerinput", None)
        owner_pid = int((worker or {}).get("mig_owner_pid") or os.getpid())
        args = [a for a in config.invocation_params.args if a != "--mig-manage"]
        hint = "pytest " + " ".join(shlex.quote(str(a)) for a in args)
        self.manager = LayoutManager(
            session, self.manage, layout, Owner.current(session.run_id, owner_pid),
            worker=(worker or {}).get("workerid", "main"), run_hint=hint.strip())
        session.manager = self.manager
        self.summary: dict[str, Any] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:  # xdist: workers record the controller pid
        node.workerinput["mig_owner_pid"] = os.getpid()

    def pytest_report_header(self, config) -> list[str] | None:
        from pytest_mig.collect import uses_suites
        if not uses_suites(config):
            return None
        try:
            from pytest_mig.gpu.manage import mig_mode_notes
            lines = mig_mode_notes(self.session.topology().gpus)
            if self.manage:
                lines.append("pytest-mig: --mig-manage: MIG instances are created per case "
                             "layout; only those this run created are destroyed at its end "
                             f"(ownership: {self.manager.store().path})")
        except MigError as exc:
            raise pytest.UsageError(str(exc)) from None
        return lines

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items) -> None:
        if not self.manage or self.manager.layout is not None:
            return  # one layout for every case: nothing to group

        def case_of(item) -> Case | None:
            params = getattr(getattr(item, "callspec", None), "params", {})
            case = params.get("mig_case")
            return case if isinstance(case, Case) else None
        from pytest_mig.ordering import order_cases
        items[:] = order_cases(items, case_of)

    def pytest_sessionfinish(self, session) -> None:
        if not self.manage or not self.session.run_dir.exists():
            return
        self.manager.write_events(self.session.run_dir)
        if hasattr(session.config, "workerinput"):
            return  # the controller tears down once every worker is done
        try:
            report = self.manager.finish()
        except MigError as exc:  # reported, not raised: the run's results are already in
            from pytest_mig.gpu.manage import CleanupReport
            report = CleanupReport(refused=[f"teardown failed: {exc}"])
        self.summary = summarise(self.session.run_dir, self.manager.owner, report,
                                 self.manager.store().path)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.summary is not None:
            for line in summary_lines(self.summary):
                terminalreporter.write_line(line)


def register(config) -> None:
    """Create the plugin object for this run (called from pytest_mig.plugin's configure)."""
    from pytest_mig.fixtures import SESSION_KEY
    plugin = ManagePlugin(config, config.stash[SESSION_KEY])
    config.pluginmanager.register(plugin, "pytest-mig-manage")
