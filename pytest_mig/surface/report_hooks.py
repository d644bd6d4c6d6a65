"""The reporting layer's pytest hooks: compare gate, compare table, history, HTML, Allure files.

Two gates change a test's outcome, both here and only for a call-phase report that passed:
`--mig-compare-fail` (a metric regressed beyond its threshold) and `--mig-require-busy` (the
main's GPU busy figure below --mig-min-busy, report/busy.py). A case with a GPU busy figure
shows it in its verbose terminal word (`PASSED (GPU busy 82 %)`).

Imports at the top, except report.compare (the compare gate: with it come the published-
results and LoadGen result parsers, about 40 ms of every start-up) and the HTML page and
trend chart modules (session end): they load where used, only when a comparison is asked
for (options.py has then loaded compare already, to parse the option) or at session end.
"""
from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mig.errors import ConfigError, MigError
from pytest_mig.io import write_json_atomic
from pytest_mig.run.settings import Settings
from pytest_mig.surface.keys import OUTCOME_KEY, SESSION_KEY
from pytest_mig.report import allure_env, junit
from pytest_mig.report.allure_env import history_source
from pytest_mig.report.busy import HostBoundFailure, busy_warning
from pytest_mig.report.files import REPORT_INCOMPLETE, write_problem
from pytest_mig.report.header import run_header
from pytest_mig.report.history import (HISTORY_NAME, append_history, entry_from_record,
                                       read_history)
from pytest_mig.report.plotting import MISSING, pyplot
from pytest_mig.report.records import load_records, outcome_record

if TYPE_CHECKING:
    from pytest_mig.report.compare import Comparison

COMPARE_PROPERTY = "mig_compare"


def pyplot_missing() -> bool:
    return pyplot() is None


def _options(config, settings: Settings) -> tuple[dict[str, float], Any, Path | None]:
    """(thresholds, CompareSpec or None, allure history dir); ConfigError.
    Each value was checked when the command line was parsed (options.py); what is left
    crosses options: --mig-compare-fail without --mig-compare, --mig-allure-history."""
    thresholds = settings.compare_fail
    spec = settings.compare
    if spec is None and thresholds:
        from pytest_mig.report.compare import CompareSpec  # loaded: see the note on imports
        spec = CompareSpec("last")
    history_dir = settings.allure_history
    if history_dir is not None:
        if not getattr(config.option, "allure_report_dir", None):  # allure-pytest's option
            raise ConfigError(f"--mig-allure-history={history_dir} needs --alluredir=DIR: "
                              "history is copied into the Allure results folder")
        history_source(history_dir)  # fail now, not at the end of a long run
    return thresholds, spec, history_dir


def write_failed(config, path: Path, exc: OSError) -> None:
    """A report file could not be written: one line now, the exit status at the end."""
    report_lost(config, write_problem(path, exc))


def report_lost(config, line: str) -> None:
    """Something of the reports was lost (`line` says what and why): the line now, at any
    verbosity (-q included), and exit status 6 at the end."""
    mig = config.stash.get(SESSION_KEY, None)
    if mig is not None:
        mig.write_errors.append(line)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and not hasattr(config, "workerinput"):
        if getattr(tr._tw, "width_of_current_line", 0):  # after pytest's "[100%]": own line
            tr._tw.line()
        tr.write_line(line, red=True)
    else:  # an xdist worker: the controller shows its warnings
        warnings.warn(pytest.PytestWarning(line), stacklevel=2)


def _fail(rep, call, exc: AssertionError) -> None:
    """Turn a passed call report into a failure carrying `exc`'s message (no traceback)."""
    try:
        raise exc
    except AssertionError:
        excinfo = pytest.ExceptionInfo.from_current()
    rep.outcome = "failed"
    rep.longrepr = excinfo.getrepr(style="value")
    call.excinfo = excinfo  # Allure reads the failure from the call


class ReportPlugin:
    """Registered once per process next to the main plugin; `session` is the MigSession."""

    def __init__(self, config, session) -> None:
        self.config, self.session = config, session
        problems: list[str] = []
        try:
            self.thresholds, self.spec, self.allure_history = _options(config, session.settings)
            if self.spec:
                from pytest_mig.report.compare import Baselines  # see the note on imports
            self.baselines = (Baselines(self.spec, read_history(self.history_path, problems),
                                        session.run_id, problems) if self.spec else None)
        except MigError as exc:
            raise pytest.UsageError(str(exc)) from None
        for line in problems[:5]:  # a corrupt line: skipped, named, the run goes on
            config.issue_config_time_warning(pytest.PytestWarning(f"pytest-mig: {line}"),
                                             stacklevel=2)
        if len(problems) > 5:
            config.issue_config_time_warning(pytest.PytestWarning(
                f"pytest-mig: {len(problems) - 5} more history line(s) skipped"), stacklevel=2)
        self.comparisons: list[Comparison] = []
        self.written: list[str] = []
        self._suite_props_done = False
        self.records: list[dict[str, Any]] = []

    @property
    def history_path(self) -> Path:
        return self.session.reports_root / HISTORY_NAME

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # -- the gate ---------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(self, item, call):
        # trylast: innermost wrapper, so the record writer and Allure see the final outcome.
        rep = yield
        if rep.when == "teardown" and not junit.keeps_case_properties(self.config):
            # xunit2: pytest writes a case's properties from its teardown report, and that
            # family's <testcase> may hold none (report/junit.py)
            rep.user_properties = junit.strip_case_properties(list(rep.user_properties))
        if rep.when != "call":
            return rep
        out = item.stash.get(OUTCOME_KEY, None)
        if out is None:
            return rep
        if self.baselines is not None and out.result is not None:
            self._compare(item, call, rep, out)
        settings = self.session.settings
        if rep.passed and settings.require_busy:
            problem = busy_warning(out.gpu_busy, settings.min_busy_pct)
            if problem:
                _fail(rep, call, HostBoundFailure(f"--mig-require-busy: {problem}"))
        return rep

    def _compare(self, item, call, rep, out) -> None:
        entry = entry_from_record(outcome_record(out, rep.outcome, "", item.nodeid),
                                  self.session.run_id, self._backend())
        comparisons = self.baselines.compare(entry, self.thresholds)
        if not comparisons:
            return
        rep.user_properties.append(
            (COMPARE_PROPERTY, json.dumps([c.to_dict() for c in comparisons])))
        regressions = [c for c in comparisons if c.regressed]
        if regressions and rep.passed:
            from pytest_mig.report.compare import RegressionFailure, failure_message
            _fail(rep, call, RegressionFailure(failure_message(entry.case, regressions,
                                                               self.spec)))

    def pytest_report_teststatus(self, report, config):
        """The verbose word of a case with a GPU busy figure: `PASSED (GPU busy 82 %)`."""
        if report.when != "call" or report.skipped or hasattr(report, "wasxfail"):
            return None
        props = dict(report.user_properties)
        value = props.get("mig_gpu_busy")
        if value in (None, "n/a"):
            return None
        sim = ", simulated" if str(props.get("mig_gpu_busy_source", "")).startswith(
            "SIMULATED") else ""
        word = f"{report.outcome.upper()} (GPU busy {float(value):.0%}{sim})".replace("%", " %")
        return report.outcome, "." if report.passed else "F", (
            word, {"green": True} if report.passed else {"red": True})

    def _backend(self) -> str:
        try:
            return self.session.topology().backend
        except MigError:
            return ""

    def _run_properties(self) -> None:
        """Run-level facts as <testsuite> properties (valid in every junit family), added
        by the controller once a case reported (a zero-case run opens no backend)."""
        self._suite_props_done = True
        if self.is_worker or not junit.family(self.config):
            return
        try:
            simulated = self.session.simulated
        except MigError:
            return
        for plugin in self.config.pluginmanager.get_plugins():
            add = getattr(plugin, "add_global_property", None)
            if callable(add) and hasattr(plugin, "family"):  # pytest's LogXML
                for name, value in junit.run_properties(self.session.run_id, self._backend(),
                                                        simulated):
                    add(name, value)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        if not self._suite_props_done and any(n == "mig_case" for n, _ in report.user_properties):
            self._run_properties()
        for name, value in report.user_properties:
            if name == COMPARE_PROPERTY:
                from pytest_mig.report.compare import Comparison
                self.comparisons.extend(Comparison.from_dict(d) for d in json.loads(value))

    # -- end of run -------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        try:
            self._finish(session)
        finally:  # the last word on the exit status: every test passed, a report did not
            if self.session.write_errors and session.exitstatus == 0:
                session.exitstatus = REPORT_INCOMPLETE

    def _write(self, path: Path, what) -> Any:
        """what(), or None with the one-line write failure reported (disk full...)."""
        try:
            return what()
        except OSError as exc:
            write_failed(self.config, path, exc)
            return None

    def _finish(self, session) -> None:
        if (self.is_worker or session.config.option.collectonly
                or not self.session.run_dir.exists() or self.session.selected_cases == 0):
            return  # a collect-only run has nothing to report (as plugin.py's sessionfinish)
        from pytest_mig.report.html import write_index  # start-up: session end only (~30 ms)
        records = [r for r in load_records(self.session.run_dir) if "case" in r]
        self.records = records
        try:
            header = run_header(self.session)
        except MigError as exc:
            header = {"run_id": self.session.run_id, "backend": "?", "error": str(exc)}
        backend = str(header.get("backend", ""))
        stamp = str(header.get("written_at", ""))
        if records:
            try:
                n = self._write(self.history_path, lambda: append_history(self.history_path, [
                    entry_from_record(r, self.session.run_id, backend, stamp) for r in records]))
                if n is not None:
                    self.written.append(f"history: {n} line(s) appended to {self.history_path}")
            except MigError as exc:  # a symlink or FIFO planted as history.jsonl
                report_lost(self.config, f"pytest-mig: history NOT written: {exc}")
            if session.exitstatus == pytest.ExitCode.INTERRUPTED:
                # A supervisor's SIGKILL may be seconds away: the data first, no picture.
                self.written.append("trend not drawn: the run was interrupted (the data is in "
                                    f"{self.history_path})")
            else:
                self._trend({r["case"] for r in records})
        by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in self.comparisons:
            by_case[c.case].append(c.to_dict())
        if self.spec is not None:
            target = self.session.run_dir / "compare.json"
            self._write(target, lambda: write_json_atomic(target, {
                "baseline": self.spec.describe(), "thresholds": self.thresholds,
                "comparisons": [c.to_dict() for c in self.comparisons]}))
        from pytest_mig.report.metrics_files import write_metrics  # session end only
        paths = self._write(self.session.run_dir / "metrics.txt", lambda: write_metrics(
            self.session.run_dir, records, bool(header.get("simulated"))))
        if paths:
            self.written.append("metrics: " + ", ".join(p.name for p in paths)
                                + " (OpenMetrics for GitLab, github-action-benchmark JSON)")
        page = self._write(self.session.run_dir / "index.html",
                           lambda: write_index(self.session.run_dir, header, records, by_case))
        if page is not None:
            self.written.append(f"summary page: {page}")
        self._layouts(records, header)
        alluredir = getattr(self.config.option, "allure_report_dir", None)
        if alluredir and "error" not in header:
            self._write(Path(alluredir), lambda: self._allure_files(Path(alluredir), header))

    def _vs_baseline(self) -> dict[str, str]:
        """case -> its headline's change against the baseline, e.g. '-3.2% (ok)'."""
        out: dict[str, str] = {}
        for c in self.comparisons:
            if c.kind in ("throughput", "latency", "metric") and c.case not in out:
                change = c.change_pct
                out[c.case] = ("no baseline" if c.baseline is None else
                               f"{'n/a' if change is None else f'{change:+.1f}%'}"
                               + (" REGRESSED" if c.regressed else ""))
        return out

    def _simulated_run(self) -> bool:
        try:
            return self.session.backend_open and self.session.simulated
        except MigError:
            return False

    def _layouts(self, records: list[dict[str, Any]], header: dict[str, Any]) -> None:
        """layouts.tsv/json/png: the aggregate per layout of a layout suite's cases."""
        from pytest_mig.report.layouts import TSV_NAME, write_layouts
        note = " (SIMULATED GPU)" if header.get("simulated") else ""
        lines = self._write(self.session.run_dir / TSV_NAME,
                            lambda: write_layouts(self.session.run_dir, records, note))
        self.written.extend(lines or [])

    def _trend(self, cases: set[str]) -> None:
        """trend.png: each case's headline over every run in history.jsonl."""
        from pytest_mig.report.plot_trend import write_trend_png  # session end: see the note
        try:
            path = write_trend_png(read_history(self.history_path),
                                   self.session.run_dir / "trend.png", cases, self.thresholds,
                                   self.spec)
        except (OSError, ValueError, MigError) as exc:
            self.written.append(f"trend not drawn: {exc}")
            return
        self.written.append(f"trend: {path}" if path else f"trend not drawn: {MISSING}"
                            if pyplot_missing() else "trend: no headline metric to draw")

    def _allure_files(self, alluredir: Path, header: dict[str, Any]) -> None:
        alluredir.mkdir(parents=True, exist_ok=True)
        allure_env.write_environment(alluredir, header)
        allure_env.write_categories(alluredir)
        allure_env.write_executor(alluredir)
        if self.allure_history is not None:
            try:
                dest = allure_env.copy_history(self.allure_history, alluredir)
                self.written.append(f"allure history copied to {dest}")
            except MigError as exc:
                report_lost(self.config, f"pytest-mig: allure history NOT copied: {exc}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker:
            return
        tr = terminalreporter
        if self.spec is not None:
            tr.write_sep("=", "pytest-mig compare")
            limits = ", ".join(f"{k} {v:g}%" for k, v in self.thresholds.items())
            tr.write_line(f"baseline: {self.spec.describe()}"
                          + (f"; fail beyond: {limits}" if limits else "; report only"))
            if self.comparisons:
                from pytest_mig.report.compare import format_table
                # by case (xdist finishes them in any order); metrics keep their order
                for line in format_table(sorted(self.comparisons, key=lambda c: c.case)):
                    tr.write_line(line)
            else:
                tr.write_line("no case produced a headline metric to compare")
        if self.records and self.config.getoption("verbose") >= -1:
            from pytest_mig.report.table import case_table  # session end only
            tr.write_sep("=", "pytest-mig results"
                         + (" (SIMULATED GPU: CPU timings)" if self._simulated_run() else ""))
            for line in case_table(self.records, self._vs_baseline()):
                tr.write_line(line)
        if self.written and self.config.getoption("verbose") >= 0:
            for line in self.written:
                tr.write_line(f"pytest-mig: {line}")
