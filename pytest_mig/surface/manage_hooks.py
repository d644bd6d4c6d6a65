"""The pytest hooks of --mig-manage and --mig-layout: each case's layout reached through the
run's `LayoutManager` (layout_manager.py), cases ordered by layout, the summary printed.

Rules: a thin hook object; plugin.py creates and registers it, options.py declares its
options; the state and the work live in layout_manager.py (no pytest there). Late imports
(docs/architecture.md, start-up cost): gpu.layouts, gpu.manage, ordering with the planner.
"""
from __future__ import annotations

import os
import shlex
from typing import Any

import pytest

from pytest_mig.surface.collect import uses_suites
from pytest_mig.errors import MigError
from pytest_mig.gpu.ownership import Owner
from pytest_mig.run.layout_manager import LayoutManager, summarise, summary_lines
from pytest_mig.types import Case


class ManagePlugin:
    """Hooks for --mig-manage / --mig-layout; registered by pytest_mig.plugin."""

    def __init__(self, config, session) -> None:
        self.config, self.session = config, session
        self.manage = session.settings.manage
        spec = session.settings.layout
        try:
            layout = None
            if spec:
                from pytest_mig.gpu.layouts import resolve_layout  # start-up: see the rules
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
        session.use_layouts(self.manager)
        self.summary: dict[str, Any] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:  # xdist: workers record the controller pid
        node.workerinput["mig_owner_pid"] = os.getpid()

    def pytest_report_header(self, config) -> list[str] | None:
        if not uses_suites(config, self.session.settings):
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
        from pytest_mig.plan.ordering import order_cases
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
