"""pytest-mig's pytest surface: options, markers, case parametrization, run header, reports.

Hooks stay thin: the work happens in session.py, suite.py, hetero.py and report/.
"""
from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import pytest

from pytest_mig.collect import uses_suites
from pytest_mig.datadir import DATA_ENV
from pytest_mig.errors import MigError
from pytest_mig.fixtures import (OUTCOME_KEY, SESSION_KEY, hetero, mig_harness,  # noqa: F401
                                 mig_session, mig_slot, mig_topology)
from pytest_mig.process import RUN_MARKER
from pytest_mig.report.hooks import write_failed
from pytest_mig.session import (MigSession, Settings, check_conflicts, new_run_id,
                                parse_harness_options)

MARKERS = {
    "performance": "a pytest-mig case run in LoadGen PerformanceOnly mode",
    "accuracy": "a pytest-mig case run in LoadGen AccuracyOnly mode",
    "mig": "a heterogeneous MIG case generated from a suite.yaml",
}


def pytest_addoption(parser) -> None:
    g = parser.getgroup("mig", "pytest-mig: heterogeneous MIG benchmarking")
    g.addoption("--mig-backend", default=None, choices=None,
                help="GPU access: auto (real NVML if a driver is present, else simulated), "
                     "nvml, simulated. Default: auto")
    g.addoption("--mig-sim-gpu", default="A100-SXM4-80GB",
                help="GPU model the simulator presents (data/gpus/<model>.yaml)")
    g.addoption("--mig-data", default=None, type=_parse_data_dir, metavar="DIR",
                help="folder overriding the packaged data (gpus/, layouts/, benchmarks.yaml; "
                     "what it lacks comes from the package); same as $PYTEST_MIG_DATA")
    g.addoption("--mig-sim-gpus", type=int, default=1, help="number of simulated GPUs")
    g.addoption("--mig-run-profile", default=None,
                help="run profile of the suite: smoke (default), nightly, submission")
    g.addoption("--harness", dest="mig_harness", default="loadgen",
                help="harness backend: loadgen (built in), command")
    g.addoption("--mig-harness-opt", action="append", default=[], metavar="KEY=VALUE",
                help="harness option, e.g. precision=bf16 or size=small (repeatable)")
    g.addoption("--mig-command", default=None,
                help="argv template for --harness=command, e.g. 'prog {benchmark} {log_dir}'")
    n = parser.getgroup("mig-nvidia", "pytest-mig: NVIDIA MLPerf harness (--harness=nvidia)")
    n.addoption("--mlperf-root", default=None, help="closed/NVIDIA working directory")
    n.addoption("--mlperf-docker", default=None, help="run every command via docker exec CONTAINER")
    n.addoption("--mlperf-action", default=None,
                help="main make target: run_harness (default), run_audit_test01/04/05")
    n.addoption("--mlperf-extra-run-args", default=None, help="extra RUN_ARGS for the main")
    n.addoption("--mlperf-main-prefix", default=None,
                help="command prefix for the main, e.g. 'nsys profile -o main'")
    n.addoption("--mlperf-start-from-device", action="store_true",
                help="pass --start_from_device to the main")
    n.addoption("--mlperf-verbose", action="store_true", help="pass --verbose to every run")
    g.addoption("--partition", dest="mig_partition", default="auto",
                help="what workloads are pinned to: mig (MIG instances; auto picks it), mps "
                     "(CUDA MPS client shares sized like the MIG profile), none (whole GPU shared)")
    g.addoption("--mig-cpu-pinning", default="auto", choices=("auto", "off"),
                help="pin each workload to its share of the CPU cores local to its GPU "
                     "(NVML CPU affinity, split among the GPU's workloads); off: no pinning. "
                     "A no-op that says so when there are fewer cores than workloads")
    g.addoption("--mig-isolated-baseline", action="store_true",
                help="run each main alone first and report interference = 1 - hetero/isolated")
    g.addoption("--mig-background", default=None, choices=("per-test", "session"),
                help="background lifetime, overriding the suite's: per-test (classic) or "
                     "session (started once per slot, kept across main runs)")
    g.addoption("--mig-dry-run", action="store_true",
                help="print every command and its environment per case (like NVIDIA's "
                     "--dryrun); run nothing: cases are skipped with their plan")
    g.addoption("--mig-min-duration", type=int, default=None, metavar="MS",
                help="main min duration in ms, overriding the run profile's")
    g.addoption("--mig-env", action="append", default=[], metavar="NAME",
                help="pass the caller's variable NAME to every workload (repeatable), e.g. "
                     "HF_TOKEN, HF_HOME, OMP_NUM_THREADS; names only: values never reach reports")
    g.addoption("--mig-lenient", action="store_true",
                help="background health problems become warnings instead of failures")
    g.addoption("--mig-reports", default="reports", help="directory for run outputs")
    g.addoption("--mig-lease-timeout", type=float, default=600.0,
                help="seconds a worker waits for a free GPU")
    g.addoption("--mig-main-startup", type=float, default=20.0,
                help="seconds allowed for the main to reach its timed phase (sizes backgrounds)")
    g.addoption("--mig-main-timeout", type=float, default=900.0,
                help="seconds after which a main run is stopped and failed")
    from pytest_mig.manage_plugin import add_options as add_manage_options
    add_manage_options(parser)
    from pytest_mig.report import hooks as report_hooks
    report_hooks.addoption(parser)
    from pytest_mig.fleet import shard_plugin
    shard_plugin.add_options(parser)  # --mig-shard, --mig-shard-durations


def _parse_data_dir(value: str) -> str:
    """--mig-data: an existing folder, made absolute (workloads inherit it)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a folder; give a folder holding gpus/, layouts/ or benchmarks.yaml")
    return str(path.resolve())


def _settings(config) -> Settings:
    opts = parse_harness_options(config.getoption("mig_harness_opt"))
    if config.getoption("mig_command"):
        opts["command"] = config.getoption("mig_command")
    for opt, key in (("mlperf_root", "mlperf_root"), ("mlperf_docker", "docker"),
                     ("mlperf_action", "action"), ("mlperf_extra_run_args", "extra_run_args"),
                     ("mlperf_main_prefix", "main_prefix")):
        if config.getoption(opt):
            opts[key] = config.getoption(opt)
    for opt, key in (("mlperf_start_from_device", "start_from_device"),
                     ("mlperf_verbose", "verbose")):
        if config.getoption(opt):
            opts[key] = "1"
    return Settings(
        backend=config.getoption("mig_backend") or "auto",
        sim_gpu=config.getoption("mig_sim_gpu"), sim_gpus=config.getoption("mig_sim_gpus"),
        run_profile=config.getoption("mig_run_profile"), harness=config.getoption("mig_harness"),
        harness_options=opts, lenient=config.getoption("mig_lenient"),
        reports=Path(config.getoption("mig_reports")),
        lease_timeout_s=config.getoption("mig_lease_timeout"),
        main_startup_s=config.getoption("mig_main_startup"),
        main_timeout_s=config.getoption("mig_main_timeout"),
        partition=config.getoption("mig_partition"),
        isolated_baseline=config.getoption("mig_isolated_baseline"),
        background=config.getoption("mig_background"),
        dry_run=config.getoption("mig_dry_run"),
        min_duration_ms=config.getoption("mig_min_duration"),
        pass_env=tuple(config.getoption("mig_env")))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("mig_data"):
        os.environ[DATA_ENV] = config.getoption("mig_data")
    try:
        settings = _settings(config)
        check_conflicts(settings, manage=config.getoption("mig_manage"),
                        layout=config.getoption("mig_layout"))
    except MigError as exc:
        raise pytest.UsageError(str(exc)) from None
    worker = getattr(config, "workerinput", None)
    # Only xdist hands a run id (and key) down; a nested pytest (pytester) starts a run of its own.
    from pytest_mig.fleet import shard_plugin
    run_id = (worker or {}).get("mig_run_id") or new_run_id() + shard_plugin.run_id_suffix(config)
    mig = MigSession(settings, run_id, Path(str(config.rootpath)),
                     key=(worker or {}).get("mig_run_key"), worker=worker is not None)
    from pytest_mig.process import pass_env, use_run_key
    use_run_key(mig.key)
    pass_env(settings.pass_env)
    mig_run = uses_suites(config)
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
    from pytest_mig.report.hooks import ReportPlugin
    config.pluginmanager.register(ReportPlugin(config, config.stash[SESSION_KEY]), "mig-report")
    from pytest_mig.manage_plugin import register as register_manage
    register_manage(config)  # --mig-manage / --mig-layout
    shard_plugin.register(config)  # --mig-shard
    if mig_run:
        from pytest_mig.process import install_sigterm_handler, reap_dead_runs
        install_sigterm_handler()
        if worker is None:
            for pid, run in reap_dead_runs(mig.reports_root, mig.run_id):
                config.issue_config_time_warning(pytest.PytestWarning(
                    f"pytest-mig: killed leftover workload pid {pid} of dead run {run}"),
                    stacklevel=2)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller -> worker
    mig = node.config.stash[SESSION_KEY]
    node.workerinput["mig_run_id"] = mig.run_id  # final: a suite run made its folder already
    node.workerinput["mig_run_key"] = mig.key


def _check_run_profile(config, name: str) -> None:
    """--mig-run-profile must be defined by a suite this run points at: a usage error (exit 4)
    naming the suites and the profiles they define, not a collection error after the run
    folder was made. Suites that fail to load are left to collection to report."""
    from pytest_mig.errors import SuiteError, did_you_mean
    from pytest_mig.suite import find_suites, load_suite

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
    """run.json and the simulated-GPU banner do not depend on the verbosity: under -q or
    --no-header pytest skips the report header, so they are written here too."""
    config = session.config
    if hasattr(config, "workerinput") or not uses_suites(config):
        return
    from pytest_mig.io import write_json_atomic
    from pytest_mig.report.header import SIMULATED_BANNER, run_header
    mig: MigSession = config.stash[SESSION_KEY]
    try:
        header = run_header(mig)
        write_json_atomic(mig.ensure_run_dir() / "run.json", header)
    except MigError as exc:
        raise pytest.UsageError(str(exc)) from None
    except OSError as exc:
        write_failed(config, mig.run_dir / "run.json", exc)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if header["simulated"] and tr is not None and (tr.verbosity < 0 or tr.no_header):
        tr.write_line(SIMULATED_BANNER, yellow=True, bold=True)


def pytest_report_header(config) -> list[str] | None:
    if not uses_suites(config):
        return None
    from pytest_mig.report.header import header_lines
    try:
        return header_lines(config.stash[SESSION_KEY])
    except MigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc) -> None:
    if "mig_case" not in metafunc.fixturenames:
        return
    from pytest_mig.collect import cases_for_module
    session: MigSession = metafunc.config.stash[SESSION_KEY]
    try:
        params = cases_for_module(session, Path(str(metafunc.definition.path)))
    except MigError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # outside the except block: no chained copy of the same message
        pytest.fail(problem, pytrace=False)  # a clean collection error: file, line, key, fix
    from pytest_mig.suite import background_cut
    cuts = sorted({f"{c.benchmark}: {cut}" for c in params if not c.skip_reason and (
        cut := background_cut(c.background_requested, c.background, c.benchmark,
                              len(c.background)))})
    for line in cuts:  # shown before any case runs, in the warnings summary too
        warnings.warn(pytest.PytestWarning(f"pytest-mig: {line}"), stacklevel=2)
    metafunc.parametrize("mig_case", [
        pytest.param(case, id=case.id, marks=[getattr(pytest.mark, case.mode), pytest.mark.mig]
                     + ([pytest.mark.skip(reason=case.skip_reason)] if case.skip_reason else []))
        for case in params])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    from pytest_mig.report.records import failure_record, outcome_record, write_record
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
            killed = item.config.stash[SESSION_KEY].sweep()
            if killed:
                warnings.warn(pytest.PytestWarning(
                    f"pytest-mig: {item.name}: killed {len(killed)} escaped process(es) its "
                    f"workloads left running: {'; '.join(killed)}"), stacklevel=2)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """xdist: a worker died mid-case; the case still gets a record naming the crash."""
    from pytest_mig.report.records import failure_record, write_record
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
    import threading

    import pytest_timeout

    from pytest_mig.process import stop_all

    def fire():
        stop_all(grace=1.0)
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, fire)
    timer.name = f"pytest-mig timeout {item.nodeid}"

    def cancel():
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel
    timer.start()
    return True


def pytest_unconfigure(config) -> None:
    mig = config.stash.get(SESSION_KEY, None)
    if mig is not None:
        mig.close()  # MPS daemons stop on every path, failures and Ctrl-C included


def _finish_session_backgrounds(session, mig: MigSession) -> None:
    """Stop session backgrounds, check each exited 0, and fail the run when one did not."""
    from pytest_mig.process import interruption
    interrupted = interruption() or (
        "SIGINT" if session.exitstatus == pytest.ExitCode.INTERRUPTED else "")
    report = mig.stop_session_backgrounds(interrupted=interrupted)
    if report is None:
        return
    from dataclasses import asdict

    from pytest_mig.io import write_json_atomic
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
    # Session end: the controller (every worker done) sweeps the whole run, a worker its own.
    killed = mig.sweep(everyone=not hasattr(session.config, "workerinput"))
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if killed and tr is not None:
        tr.write_line(f"pytest-mig: killed {len(killed)} escaped process(es) the run's "
                      f"workloads left running: {'; '.join(killed)}", yellow=True)
    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return  # the controller aggregates; a collect-only run has nothing to report
    if not mig.run_dir.exists():
        return
    from pytest_mig.report.header import run_header
    from pytest_mig.report.records import collect_results
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        path = collect_results(mig.run_dir, run_header(mig))
    except OSError as exc:
        write_failed(session.config, mig.run_dir / "results.json", exc)
    else:
        if tr is not None:
            tr.write_line(f"pytest-mig: results in {path}")
