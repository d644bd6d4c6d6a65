"""Whole pytest sessions through the plugin (pytester), on the simulated GPU with a fake
workload program: outcomes, ids, markers, failure messages, reports, no leftover process."""
from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "programs" / "fake_workload.py"

SUITE = textwrap.dedent("""
    suite: mini
    class: datacenter
    benchmarks:
      resnet50: {scenarios: [Offline], accuracy: 0.99}
      bert: {scenarios: [Offline, Server], accuracy: 0.99}
    gpus:
      A100-SXM4-80GB: {profiles: [1g.10gb], slots: 7}
    modes: [performance]
    background:
      set: [bert, dlrm, rnnt]
      lifetime: per-test
    run_profiles:
      smoke:
        min_duration_ms: 400
        min_query_count: 1
        start_time_buffer_s: 4
        end_time_buffer_min_s: 0.2
        background_min_duration_ms: auto
        sample_count: 16
    default_run_profile: smoke
""")

TEST = textwrap.dedent("""
    from pytest_mig.types import PERFORMANCE

    def test_hetero(mig_case, hetero):
        outcome = hetero.run(mig_case)
        if mig_case.mode == PERFORMANCE:
            assert outcome.valid, outcome.why_invalid()
        assert outcome.background_healthy, outcome.why_unhealthy()
""")


@pytest.fixture
def suite_dir(pytester):
    d = pytester.mkdir("suites")
    (d / "suite.yaml").write_text(SUITE)
    (d / "test_mini.py").write_text(TEST)
    return d


def run(pytester, script: dict, *extra: str):
    script_path = pytester.path / "script.json"
    script_path.write_text(json.dumps(script))
    command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --script {script_path} "
               "--role {role} --name {name} --log-dir {log_dir} --min-duration-ms {min_duration_ms}")
    return pytester.runpytest_subprocess(
        "suites", "--mig-backend=simulated", "--harness=command", f"--mig-command={command}",
        "--mig-main-startup=1.5", "-p", "no:cacheprovider", "-rA", *extra)


def leftover_processes(run_dir_root: Path) -> list[str]:
    """Processes still carrying this test's run marker (scan of /proc environ)."""
    found = []
    ids = {p.name for p in run_dir_root.iterdir()} if run_dir_root.exists() else set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"PYTEST_MIG_RUN_ID=") and item.split(b"=", 1)[1].decode() in ids:
                found.append(proc.name)
    return found


def results(pytester) -> dict:
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    return json.loads((run_dir / "results.json").read_text())


def test_all_well(pytester, suite_dir):
    r = run(pytester, {})
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["*SIMULATED NVML*", "*SIMULATED GPU*",
                            "PASSED *test_hetero?resnet50-Offline-1g.10gb-performance?",
                            "PASSED *test_hetero?bert-Server-1g.10gb-performance?"])
    data = results(pytester)
    assert data["run"]["simulated"] is True
    recs = {t["case"]: t for t in data["tests"]}
    assert set(recs) == {"resnet50-Offline-1g.10gb-performance", "bert-Offline-1g.10gb-performance",
                         "bert-Server-1g.10gb-performance"}
    rec = recs["resnet50-Offline-1g.10gb-performance"]
    assert rec["outcome"] == "passed" and rec["result"]["valid"] is True
    assert rec["result"]["metric"] == "Samples per second"
    assert [h["benchmark"] for h in rec["health"]] == ["bert", "dlrm", "rnnt"]
    assert all(h["healthy"] and h["exit_code"] == 0 for h in rec["health"])
    assert leftover_processes(pytester.path / "reports") == []


def test_selection_by_keyword_and_marker(pytester, suite_dir):
    r = run(pytester, {}, "-k", "bert and Server", "--collect-only", "-q")
    r.stdout.fnmatch_lines(["*test_hetero?bert-Server-1g.10gb-performance?*", "*1/3 tests collected*"])
    r = run(pytester, {}, "-m", "accuracy", "--collect-only", "-q")
    r.stdout.fnmatch_lines(["*3 deselected*"])


def test_background_crash_mid_run_fails_naming_it(pytester, suite_dir):
    r = run(pytester, {"bg2": "crash_after_ready"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background unhealthy*bg2-dlrm*"])
    assert "crashed (exit code 3)" in r.stdout.str()
    assert leftover_processes(pytester.path / "reports") == []


def test_background_never_ready_fails_within_buffer(pytester, suite_dir):
    r = run(pytester, {"bg1": "never_ready"}, "-k", "resnet50", "--durations=1")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background bg1-bert (bert) was not ready within start_time_buffer 4 s*"])
    assert leftover_processes(pytester.path / "reports") == []


def test_background_crash_before_ready(pytester, suite_dir):
    r = run(pytester, {"bg3": "crash_before_ready"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background bg3-rnnt (rnnt) exited with code 7 before it was ready*",
                            "*cannot open engine*"])


def test_main_invalid_fails_with_reason(pytester, suite_dir):
    r = run(pytester, {"main": "invalid"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*result is INVALID: Min duration not satisfied*"])
    rec = results(pytester)["tests"][0]
    assert rec["outcome"] == "failed" and rec["result"]["valid"] is False


def test_background_finishing_early_fails(pytester, suite_dir):
    r = run(pytester, {"bg1": "early"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*bg1-bert: finished too early*"])


def test_lenient_downgrades_health(pytester, suite_dir):
    r = run(pytester, {"bg1": "exit_nonzero"}, "-k", "resnet50", "--mig-lenient")
    r.assert_outcomes(passed=1)
    assert results(pytester)["tests"][0]["warnings"] == ["bg1-bert: exited with code 4"]


def test_main_without_summary(pytester, suite_dir):
    r = run(pytester, {"main": "no_summary"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*no LoadGen result*no mlperf_log_summary.txt*"])


def test_bad_option_is_usage_error(pytester, suite_dir):
    r = pytester.runpytest_subprocess("suites", "--mig-backend=simulatd")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*unknown backend (did you mean 'simulated'?)*"])


def test_sigterm_mid_run_leaves_no_process_and_keeps_logs(pytester, suite_dir):
    import signal
    import subprocess
    import time

    script_path = pytester.path / "script.json"
    script_path.write_text(json.dumps({"main": "never_ready"}))
    command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --script {script_path} "
               "--role {role} --name {name} --log-dir {log_dir} --min-duration-ms {min_duration_ms}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites", "--mig-backend=simulated", "--harness=command",
         f"--mig-command={command}", "-k", "resnet50", "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reports = pytester.path / "reports"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(reports.glob("*/*/main.log")):
        time.sleep(0.1)
    assert list(reports.glob("*/*/main.log")), "main never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert leftover_processes(reports) == []
    (main_log,) = reports.glob("*/*/main.log")
    assert "warming up" in main_log.read_text()
    assert len(list(reports.glob("*/*/bg*.log"))) == 3


def test_isolated_baseline_reports_interference(pytester, suite_dir):
    r = run(pytester, {}, "-k", "resnet50", "--mig-isolated-baseline", "--junitxml=j.xml")
    r.assert_outcomes(passed=1)
    rec = results(pytester)["tests"][0]
    isolation = rec["isolated"].pop("isolation")
    assert rec["isolated"] == {"valid": True, "metric": "Samples per second", "value": 318100.0}
    assert isolation == {"method": "run before this case's backgrounds were started",
                         "backgrounds_paused": 0, "verified": None,
                         "verification": "not verifiable: no NVML process list (simulated GPU)"}
    assert rec["interference"] == 0.0  # the fake reports the same throughput alone and loaded
    assert "main-isolated" in rec["commands"]
    xml = (pytester.path / "j.xml").read_text()
    assert 'name="mig_interference" value="0.0000"' in xml
    assert 'name="mig_result" value="VALID"' in xml


def test_interference_direction():
    from pytest_mig.hetero import interference
    from pytest_mig.types import BenchmarkResult

    def res(name, value):
        return BenchmarkResult("b", "s", "performance", Path("."), metric_name=name,
                               metric_value=value)
    assert interference(res("Samples per second", 100.0), res("Samples per second", 90.0)) == \
        pytest.approx(0.10)
    lat = "90.0th percentile latency (ns)"
    assert interference(res(lat, 100.0), res(lat, 125.0)) == pytest.approx(0.20)
    assert interference(None, res(lat, 1.0)) is None


def test_session_backgrounds_start_once_and_stop_cleanly(pytester, suite_dir):
    r = run(pytester, {}, "--mig-background=session")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["*session backgrounds: 3 started, 0 restarted, stopped cleanly*"])
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    sb = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert sb["healthy"] and sb["starts"] == 3 and [w["exit_code"] for w in sb["workloads"]] == [0] * 3
    recs = results(pytester)["tests"]
    assert all(h["healthy"] for rec in recs for h in rec["health"])
    assert leftover_processes(pytester.path / "reports") == []


def test_session_background_dying_fails_that_test_and_is_restarted(pytester, suite_dir):
    r = run(pytester, {"bg2": "crash_after_ready"}, "--mig-background=session", "-k", "bert")
    # bg2 dies during the first main (fails it); the restarted bg2 dies again in the second.
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*bg2-dlrm: ended (exit code 3) before the main ended*"])
    out = r.stdout.str()
    assert "restarted" in out and "UNHEALTHY" in out
    assert leftover_processes(pytester.path / "reports") == []


def test_dry_run_prints_plan_and_runs_nothing(pytester, suite_dir):
    r = run(pytester, {}, "--mig-dry-run", "-k", "resnet50", "-v")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*# resnet50-Offline-1g.10gb-performance on GPU 0 (A100-SXM4-80GB)*",
                            "*bg1-bert: bert Offline performance on MIG-*", "*env: CUDA_VISIBLE_DEVICES=MIG-*",
                            "*cmd: *fake_workload.py --script*--role main --name main*",
                            "*dry run: * plan lines in *plan.txt*"])
    assert not list(pytester.path.glob("reports/*/*/main.log"))  # nothing was started


def _session_suite(suite_dir):
    (suite_dir / "suite.yaml").write_text(SUITE.replace("lifetime: per-test", "lifetime: session"))


def test_isolated_baselines_first_with_session_backgrounds(pytester, suite_dir):
    """One pytest process: every baseline runs before the session pool starts, which starts once."""
    _session_suite(suite_dir)
    r = run(pytester, {}, "-k", "Offline", "--mig-isolated-baseline")
    r.assert_outcomes(passed=2)
    recs = results(pytester)["tests"]
    assert [rec["isolated"]["isolation"]["method"] for rec in recs] == [
        "measured before the session backgrounds started (baselines first)"] * 2
    started = min(rec["phases"]["backgrounds_started"] for rec in recs
                  if "backgrounds_started" in rec["phases"])
    for rec in recs:  # each baseline's main had ended before any background started
        log = Path(rec["paths"]["dir"]) / "main-isolated.log"
        assert log.stat().st_mtime <= started
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    final = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert (final["starts"], final["pauses"], final["healthy"]) == (3, 0, True)


def test_isolated_baseline_pauses_the_session_pool_under_xdist(pytester, suite_dir):
    """Cases spread by xdist at run time: the pool of the GPU is stopped for each baseline."""
    _session_suite(suite_dir)
    r = run(pytester, {}, "-k", "Offline", "--mig-isolated-baseline", "-p", "xdist", "-n", "1")
    r.assert_outcomes(passed=2)
    recs = sorted(results(pytester)["tests"], key=lambda rec: rec["phases"]["main_start"])
    methods = [rec["isolated"]["isolation"] for rec in recs]
    assert [m["backgrounds_paused"] for m in methods] == [0, 3]
    assert all(m["method"].startswith("session backgrounds of this GPU stopped") for m in methods)
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    (final_path,) = run_dir.glob("session-backgrounds*.json")
    final = json.loads(final_path.read_text())
    assert (final["starts"], final["pauses"], final["healthy"]) == (6, 1, True)
    paused = [w for w in final["workloads"] if w["ended_by"] == "stopped by pytest-mig"]
    assert len(paused) == 6  # three paused for the baseline, three at session end
    assert leftover_processes(pytester.path / "reports") == []
