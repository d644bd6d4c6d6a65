"""Each case's MIG layout on its leased GPU: wanted, reached (--mig-manage) or explained,
the events a process saw, and the run's instances removed at its end. No pytest.

Rules:
- One `LayoutManager` per process (the xdist controller or a worker); manage_hooks.py (the
  pytest surface) builds it and puts it in `MigSession.manager`, the typed slot
  (`state.LayoutPreparer`) through which case_fixtures.py's slot reaches it.
- It destroys only instances this run created (gpu/ownership.py), under the GPU's lease.
- Each process writes its events to mig-manage/<worker>.json; the controller merges them
  into mig-manage.json (`summarise`).
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pytest_mig.gpu.ownership import Owner, OwnershipStore, store_path
from pytest_mig.io import write_json_atomic
from pytest_mig.types import Case

if TYPE_CHECKING:
    from pytest_mig.gpu.layouts import Layout
    from pytest_mig.gpu.manage import CleanupReport
    from pytest_mig.gpu.slots import SlotProblem
    from pytest_mig.run.state import MigSession

# Late imports (docs/architecture.md, start-up cost): gpu.manage, planner, slots, leases.

EVENTS_DIR = "mig-manage"  # one file per process (xdist worker or the only one)
SUMMARY_FILE = "mig-manage.json"


class LayoutManager:
    """One process's view: wanted layouts, applying them, the events it saw."""

    def __init__(self, session: MigSession, manage: bool, layout: Layout | None, owner: Owner,
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
    """Replaced atomically (io.py), readable as a file open() makes (0o666 less the umask)."""
    write_json_atomic(path, data, indent=1, mode=0o666)


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
