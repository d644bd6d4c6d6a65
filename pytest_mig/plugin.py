"""pytest-mig's pytest entry point (pytest11: mig): markers, case parametrization, run header,
records; it adds every option (options.py) and registers every other hook object.

Rules:
- The one entry point: options come from options.py only; the report, manage and shard hook
  objects are created and registered in `_register_hook_objects`, by nothing else.
- Hooks stay thin: the work happens in run/state.py, plan/suite.py,
  orchestration/hetero_run.py and report/.
- Stash keys live in keys.py.
- Late imports (docs/architecture.md, start-up cost): the suite parser, the shard plugin
  (--mig-shard only), pytest-timeout.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest

from pytest_mig.surface.collect import cases_for_module, uses_suites
from pytest_mig.datadir import DATA_ENV
from pytest_mig.errors import MigError, SuiteError, did_you_mean
# The fixtures are this plugin's: pytest finds them in this module's namespace.
from pytest_mig.surface.case_fixtures import (hetero, mig_harness, mig_session,  # noqa: F401
                                              mig_slot, mig_topology)
from pytest_mig.io import write_json_atomic
from pytest_mig.surface.keys import OUTCOME_KEY, PRIOR_RUN_MARKER_KEY, SESSION_KEY
from pytest_mig.surface.manage_hooks import ManagePlugin
from pytest_mig.surface.options import add_options
from pytest_mig.orchestration.process import (RUN_MARKER, announce_with,
                                              install_sigterm_handler, interruption, pass_env,
                                              reap_dead_runs, set_guardian_note, stop_all,
                                              take_escaped, uninstall_signal_handlers,
                                              use_run_key)
from pytest_mig.report.header import header_lines, run_header, simulated_banner
from pytest_mig.surface.report_hooks import ReportPlugin, write_failed
from pytest_mig.report.records import (collect_results, failure_record, outcome_record,
                                       write_record)
from pytest_mig.runid import new_run_id
from pytest_mig.run.state import MigSession
from pytest_mig.harness.registry import built_in
from pytest_mig.run.settings import MLPERF_BOOLEAN, MLPERF_FLAGS, Settings

# The suites' shared test body asserts as a test module does (pytest's assertion messages).
pytest.register_assert_rewrite("pytest_mig.case_test")

MARKERS = {
    "performance": "a pytest-mig case run in LoadGen PerformanceOnly mode",
    "accuracy": "a pytest-mig case run in LoadGen AccuracyOnly mode",
    "mig": "a heterogeneous MIG case generated from a suite.yaml",
}


def pytest_addhooks(pluginmanager) -> None:
    from pytest_mig.surface import hookspecs
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser) -> None:
    add_options(parser)  # every option of every hook object (options.py)


def _settings(config) -> Settings:
    """The run's Settings from the parsed options (each value already checked): the one
    place that reads pytest-mig's options; every other module reads Settings."""
    opts = dict(config.getoption("mig_harness_opt"))
    if config.getoption("mig_command"):
        opts["command"] = config.getoption("mig_command")
    for key, flag in MLPERF_FLAGS.items():
        value = config.getoption(flag.lstrip("-").replace("-", "_"))
        if value:
            opts[key] = "1" if key in MLPERF_BOOLEAN else value
    history = config.getoption("mig_allure_history")
    harnesses = built_in()
    config.hook.pytest_mig_register_harnesses(registry=harnesses)
    return Settings(
        harnesses=harnesses,
        backend=config.getoption("mig_backend") or "auto",
        backend_named=bool(config.getoption("mig_backend")),
        cpu_pinning=config.getoption("mig_cpu_pinning"),
        sample_interval_s=config.getoption("mig_sample_interval"),
        manage=bool(config.getoption("mig_manage")), layout=config.getoption("mig_layout"),
        compare=config.getoption("mig_compare"),
        compare_fail=config.getoption("mig_compare_fail") or {},
        allure_history=Path(history) if history else None,
        shard=config.getoption("mig_shard"),
        shard_durations=config.getoption("mig_shard_durations"),
        sim_gpu=config.getoption("mig_sim_gpu"), sim_gpus=config.getoption("mig_sim_gpus"),
        run_profile=config.getoption("mig_run_profile"), harness=config.getoption("mig_harness"),
        harness_options=opts, lenient=config.getoption("mig_lenient"),
        reports=config.getoption("mig_reports"),
        lease_timeout_s=config.getoption("mig_lease_timeout"),
        main_startup_s=config.getoption("mig_main_startup"),
        main_timeout_s=config.getoption("mig_main_timeout"),
        partition=config.getoption("mig_partition"),
        isolated_baseline=config.getoption("mig_isolated_baseline"),
        background=config.getoption("mig_background"),
        dry_run=config.getoption("mig_dry_run"),
        min_duration_ms=config.getoption("mig_min_duration"),
        pass_env=tuple(config.getoption("mig_env")),
        min_busy_pct=config.getoption("mig_min_busy"),
        rounds=config.getoption("mig_rounds"),
        require_busy=config.getoption("mig_require_busy"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("mig_data"):
        os.environ[DATA_ENV] = config.getoption("mig_data")
    try:
        settings = _settings(config)
    except MigError as exc:
        raise pytest.UsageError(str(exc)) from None
    worker = getattr(config, "workerinput", None)
    # Only xdist hands a run id (and key) down; a nested pytest (pytester) starts a run of its own.
    shard = settings.shard
    run_id = (worker or {}).get("mig_run_id") or new_run_id() + (shard.run_suffix if shard else "")
    # What was there before comes back at unconfigure (an in-process run must not leave its id
    # to the next run in the same interpreter); the session sets it from its run folder on.
    config.stash[PRIOR_RUN_MARKER_KEY] = os.environ.get(RUN_MARKER)
    mig = MigSession(settings, run_id, Path(str(config.rootpath)),
                     key=(worker or {}).get("mig_run_key"), worker=worker is not None)
    use_run_key(mig.key)
    pass_env(settings.pass_env)
    mig_run = uses_suites(config, settings)
    if mig_run and worker is None and settings.run_profile:
        _check_run_profile(config, settings.run_profile)  # before any run folder exists
    if mig_run and worker is None:
        try:
            mig.ensure_run_dir()  # exclusive, so the id may change: before anyone learns it
        except OSError as exc:
            raise pytest.UsageError(
                f"--mig-reports={settings.reports}: cannot create the run folder "
                f"{mig.run_dir}: {exc.strerror or exc}; point --mig-reports at a writable "
                "folder") from None
    # Workers and every child inherit the run id: one run, one simulated GPU, one report dir.
    os.environ[RUN_MARKER] = mig.run_id
    config.stash[SESSION_KEY] = mig
    _register_hook_objects(config, mig)
    if mig_run:
        install_sigterm_handler()
        announce_with(lambda line: _say(config, line))
        set_guardian_note(mig.run_dir / "orphans.log")
        if worker is None:
            for pid, run in reap_dead_runs(mig.reports_root, mig.run_id):
                config.issue_config_time_warning(pytest.PytestWarning(
                    f"pytest-mig: killed leftover workload pid {pid} of dead run {run}"),
                    stacklevel=2)


def _say(config, line: str) -> None:
    """A line on the terminal now, whatever the capture (what a stop is waiting for)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or hasattr(config, "workerinput"):
        raise OSError("no terminal")  # process.announce falls back to stderr
    _own_line(tr)
    tr.write_line(line, yellow=True)


def _own_line(tr) -> None:
    """After pytest's progress ('[100%]') the cursor may sit at the end of a line that
    pytest's write_line does not end: end it, so each pytest-mig line is a line of its own."""
    if getattr(getattr(tr, "_tw", None), "width_of_current_line", 0):
        tr._tw.line()


def _register_hook_objects(config, mig: MigSession) -> None:
    """Every other hook object of pytest-mig, registered here and nowhere else."""
    config.pluginmanager.register(ReportPlugin(config, mig), "mig-report")
    config.pluginmanager.register(ManagePlugin(config, mig), "pytest-mig-manage")
    shard = mig.settings.shard
    if shard is not None:
        from pytest_mig.surface.shard_hooks import ShardPlugin  # start-up: only a shard run
        config.pluginmanager.register(ShardPlugin(config, mig, shard), "pytest-mig-shard")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller -> worker
    mig = node.config.stash[SESSION_KEY]
    node.workerinput["mig_run_id"] = mig.run_id  # final: a suite run made its folder already
    node.workerinput["mig_run_key"] = mig.key


def _check_run_profile(config, name: str) -> None:
    """--mig-run-profile must be defined by a suite this run points at: a usage error (exit 4)
    naming the suites and the profiles they define, not a collection error after the run
    folder was made. Suites that fail to load are left to collection to report."""
    from pytest_mig.plan.suite import find_suites, load_suite  # start-up: see the note on imports

    files: set[Path] = set()
    for arg in config.args:
        p = Path(str(arg).split("::")[0])
        if not p.exists():
            continue
        p = p.resolve()
        files.update(find_suites(p) if p.is_dir() else [])
        files.update(d / "suite.yaml" for d in [p if p.is_dir() else p.parent, *p.parents]
                     if (d / "suite.yaml").exists())
    defined: dict[str, list[str]] = {}
    for f in sorted(files):
        try:
            defined[str(f)] = list(load_suite(f).run_profiles)
        except (SuiteError, OSError):
            continue
    if not defined or any(name in names for names in defined.values()):
        return
    known = sorted({n for names in defined.values() for n in names})
    raise pytest.UsageError(
        f"--mig-run-profile={name}: no suite of this run defines it{did_you_mean(name, known)}; "
        f"defined: {', '.join(known)} (in {', '.join(sorted(defined))})")


def pytest_sessionstart(session) -> None:
    """The simulated-GPU banner does not depend on the verbosity: under -q or --no-header
    pytest skips the report header, so it is printed here. A run that will surely simulate
    knows it without opening the simulator (opened, with run.json written, by the first case
    or the run header); any other opens its backend now to know what it talks to."""
    config = session.config
    mig: MigSession = config.stash[SESSION_KEY]
    if hasattr(config, "workerinput") or not uses_suites(config, mig.settings):
        return
    simulated = mig.surely_simulated() and not mig.backend_open
    if not simulated:
        try:
            simulated = mig.topology().backend == "simulated"  # writes run.json
        except MigError as exc:
            raise pytest.UsageError(str(exc)) from None
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if simulated and tr is not None and (tr.verbosity < 0 or tr.no_header):
        tr.write_line(simulated_banner(mig.settings), yellow=True, bold=True)


def pytest_report_header(config) -> list[str] | None:
    mig: MigSession = config.stash[SESSION_KEY]
    if not uses_suites(config, mig.settings):
        return None
    try:
        return header_lines(mig)
    except MigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc) -> None:
    if "mig_case" not in metafunc.fixturenames:
        return
    session: MigSession = metafunc.config.stash[SESSION_KEY]
    try:
        params = cases_for_module(session, Path(str(metafunc.definition.path)))
    except MigError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # outside the except block: no chained copy of the same message
        pytest.fail(problem, pytrace=False)  # a clean collection error: file, line, key, fix
    from pytest_mig.plan.suite import background_cut  # start-up: see the note on imports
    cuts = sorted({f"{c.benchmark}: {cut}" for c in params if not c.skip_reason and (
        cut := background_cut(c.background_requested, c.background, c.benchmark,
                              len(c.background)))})
    for line in cuts:  # shown before any case runs, in the warnings summary too
        warnings.warn(pytest.PytestWarning(f"pytest-mig: {line}"), stacklevel=2)
    metafunc.parametrize("mig_case", [
        pytest.param(case, id=case.id, marks=[getattr(pytest.mark, case.mode), pytest.mark.mig]
                     + ([pytest.mark.skip(reason=case.skip_reason)] if case.skip_reason else []))
        for case in params])


def _case_id(item) -> str | None:
    case = getattr(getattr(item, "callspec", None), "params", {}).get("mig_case")
    return getattr(case, "id", None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Before -k/-m deselect: every case id collected (for the zero-selection hint)."""
    mig = config.stash.get(SESSION_KEY, None)
    if mig is not None:
        mig.record_collection([c for c in map(_case_id, items) if c])


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    """How many cases were selected; none of several collected: say what ids look like."""
    config = session.config
    mig = config.stash.get(SESSION_KEY, None)
    if (mig is None or hasattr(config, "workerinput") or not uses_suites(config, mig.settings)
            or mig.settings.shard is not None):
        return  # a shard the plan left empty still writes its run folder (the merge reads it)
    mig.record_selection(sum(1 for item in session.items if _case_id(item)))
    ids = getattr(mig, "collected_case_ids", [])
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if mig.selected_cases or not ids or tr is None:
        return
    from pytest_mig.report.selection import zero_selection_hint  # only when it is needed
    tr.write_line(zero_selection_hint(ids, config.option.keyword, config.option.markexpr),
                  yellow=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    out = item.stash.get(OUTCOME_KEY, None)
    try:
        if out is not None and (rep.when == "call" or (rep.when == "teardown" and rep.failed)):
            message = rep.longreprtext if rep.failed else ""
            record = outcome_record(out, rep.outcome, message, item.nodeid)
            if rep.when == "call":
                record["duration_s"] = round(rep.duration, 3)  # shards balance with it
            write_record(out.test_dir, record)
        elif out is None and rep.when == "setup" and rep.failed:
            # A case that errored before it ran (lease, layout, NVML) still gets its record.
            case = getattr(getattr(item, "callspec", None), "params", {}).get("mig_case")
            if case is not None:
                test_dir = item.config.stash[SESSION_KEY].test_dir(item.name)
                write_record(test_dir, failure_record(item.nodeid, "error", rep.longreprtext,
                                                      case, test_dir))
    except OSError as exc:  # disk full: the run goes on, the record is named as lost
        test_dir = out.test_dir if out is not None else item.config.stash[SESSION_KEY].run_dir
        write_failed(item.config, Path(test_dir) / "record.json", exc)
    if rep.when == "teardown" and out is not None:
        del item.stash[OUTCOME_KEY]  # the record is written: do not keep outcomes per item
    return rep


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Case end: whatever a stopped workload left running (an escaped descendant) is killed,
    with a warning naming it."""
    try:
        return (yield)
    finally:
        if "mig_case" in getattr(item, "fixturenames", ()):
            killed = take_escaped() + item.config.stash[SESSION_KEY].sweep()
            if killed:
                warnings.warn(pytest.PytestWarning(
                    f"pytest-mig: {item.name}: killed {len(killed)} escaped process(es) its "
                    f"workloads left running: {'; '.join(killed)}"), stacklevel=2)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """xdist: a worker died mid-case; the case still gets a record naming the crash."""
    test_dir = sched.config.stash[SESSION_KEY].test_dir(crashitem.rpartition("::")[2])
    try:
        write_record(test_dir, failure_record(crashitem, "failed", str(report.longrepr),
                                              test_dir=test_dir))
    except OSError as exc:
        write_failed(sched.config, test_dir, exc)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist: a worker died; its workloads must not keep the GPU it held."""
    if error:
        node.config.stash[SESSION_KEY].reap_orphans()


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's thread method ends the process with os._exit: stop our workload
    groups first so none outlives it (the signal method unwinds normally)."""
    if settings.method != "thread":
        return None
    import pytest_timeout  # an optional plugin: there when this hook is called

    def fire():
        stop_all(grace=1.0)
        _reports_before_exit(item, settings.timeout)
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, fire)
    timer.name = f"pytest-mig timeout {item.nodeid}"

    def cancel():
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel
    timer.start()
    return True


def _reports_before_exit(item, timeout: float) -> None:
    """pytest-timeout's thread method is about to os._exit (no finally, no hook runs): the
    case's record, results.json and the summary page are written now."""
    config = item.config
    mig = config.stash.get(SESSION_KEY, None)
    if mig is None or not mig.run_dir.exists():
        return
    message = (f"Failed: Timeout (>{timeout}s) from pytest-timeout (thread method: pytest exits "
               "at once; pytest-mig stopped the workloads and wrote the reports first)")
    out = item.stash.get(OUTCOME_KEY, None)
    case = getattr(getattr(item, "callspec", None), "params", {}).get("mig_case")
    try:
        if out is not None:
            write_record(out.test_dir, outcome_record(out, "failed", message, item.nodeid))
        elif case is not None:
            test_dir = mig.test_dir(item.name)
            write_record(test_dir, failure_record(item.nodeid, "failed", message, case, test_dir))
        if hasattr(config, "workerinput"):
            return  # the controller records the crashed worker's case and writes the rest
        mig.stop_session_backgrounds(interrupted="the thread-method timeout")
        path = collect_results(mig.run_dir, run_header(mig))
        report = config.pluginmanager.get_plugin("mig-report")
        if report is not None:
            report._finish(item.session)
        _say_or_print(config, f"pytest-mig: results in {path} (written before the timeout's "
                              "exit)")
    except (OSError, MigError) as exc:
        _say_or_print(config, f"pytest-mig: reports NOT written before the thread-method "
                              f"timeout's exit: {exc}")


def _say_or_print(config, line: str) -> None:
    try:
        _say(config, line)
    except Exception:  # noqa: BLE001 - any terminal trouble: stderr
        import sys
        print(line, file=sys.stderr, flush=True)


def pytest_unconfigure(config) -> None:
    uninstall_signal_handlers()
    announce_with(None)
    mig = config.stash.get(SESSION_KEY, None)
    if mig is not None:  # MPS daemons stop on every path, failures and Ctrl-C included
        mig.close(launched=not config.option.collectonly)
        if config.option.collectonly or mig.selected_cases == 0:
            mig.discard_empty_run()  # a run that ran no case leaves no folder
    if PRIOR_RUN_MARKER_KEY in config.stash:
        prior = config.stash[PRIOR_RUN_MARKER_KEY]
        if prior is None:
            os.environ.pop(RUN_MARKER, None)
        else:
            os.environ[RUN_MARKER] = prior


def _finish_session_backgrounds(session, mig: MigSession) -> None:
    """Stop session backgrounds, check each exited 0, and fail the run when one did not."""
    interrupted = interruption() or (
        "SIGINT" if session.exitstatus == pytest.ExitCode.INTERRUPTED else "")
    report = mig.stop_session_backgrounds(interrupted=interrupted)
    if report is None:
        return
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    name = f"session-backgrounds-{worker}.json" if worker else "session-backgrounds.json"
    try:
        write_json_atomic(mig.ensure_run_dir() / name, {
            "healthy": report.healthy, "starts": mig.pool.starts, "restarts": mig.pool.restarts,
            "pauses": mig.pool.pauses, "interrupted": interrupted or None,
            "workloads": [asdict(w) for w in report.workloads]})
    except OSError as exc:
        write_failed(session.config, mig.run_dir / name, exc)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        _own_line(tr)
        tr.write_line(f"pytest-mig: session backgrounds: {mig.pool.starts} started, "
                      f"{mig.pool.restarts} restarted, "
                      + (f"{mig.pool.pauses} paused for isolated baselines, " if mig.pool.pauses
                         else "") + "stopped "
                      + ("cleanly" if report.healthy else "UNHEALTHY: " + "; ".join(report.problems())),
                      red=not report.healthy)
    if not report.healthy and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_sessionfinish(session) -> None:
    mig: MigSession = session.config.stash[SESSION_KEY]
    _finish_session_backgrounds(session, mig)  # every process stops the backgrounds it owns
    # Session end: the controller (every worker done) sweeps the whole run, a worker its own;
    # a collect-only run started no workload: nothing to look for.
    killed = ([] if session.config.option.collectonly
              else take_escaped() + mig.sweep(everyone=not hasattr(session.config, "workerinput")))
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if killed and tr is not None:
        _own_line(tr)
        tr.write_line(f"pytest-mig: killed {len(killed)} escaped process(es) the run's "
                      f"workloads left running: {'; '.join(killed)}", yellow=True)
    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return  # the controller aggregates; a collect-only run has nothing to report
    if not mig.run_dir.exists() or mig.selected_cases == 0:
        return  # no case selected: no report (the folder goes at unconfigure)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        path = collect_results(mig.run_dir, run_header(mig))
    except OSError as exc:
        write_failed(session.config, mig.run_dir / "results.json", exc)
    else:
        if tr is not None:
            _own_line(tr)
            tr.write_line(f"pytest-mig: results in {path}")
