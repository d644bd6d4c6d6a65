"""Whole pytest sessions through the plugin (pytester), on the simulated GPU with a fake
workload program: outcomes, ids, markers, failure messages, reports, no leftover process."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest


def test_all_well(mini):
    r = mini.run({})
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["*SIMULATED NVML*", "*SIMULATED GPU*",
                            "PASSED *test_hetero?resnet50-Offline-1g.10gb-performance?",
                            "PASSED *test_hetero?bert-Server-1g.10gb-performance?"])
    data = mini.results()
    assert data["run"]["simulated"] is True
    recs = {t["case"]: t for t in data["tests"]}
    assert set(recs) == {"resnet50-Offline-1g.10gb-performance", "bert-Offline-1g.10gb-performance",
                         "bert-Server-1g.10gb-performance"}
    rec = recs["resnet50-Offline-1g.10gb-performance"]
    assert rec["outcome"] == "passed" and rec["result"]["valid"] is True
    assert rec["result"]["metric"] == "Samples per second"
    assert [h["benchmark"] for h in rec["health"]] == ["bert", "dlrm", "rnnt"]
    assert all(h["healthy"] and h["exit_code"] == 0 for h in rec["health"])
    assert mini.leftovers() == []


def test_selection_by_keyword_and_marker(mini):
    r = mini.run({}, "-k", "bert and Server", "--collect-only", "-q")
    r.stdout.fnmatch_lines(["*test_hetero?bert-Server-1g.10gb-performance?*", "*1/3 tests collected*"])
    r = mini.run({}, "-m", "accuracy", "--collect-only", "-q")
    r.stdout.fnmatch_lines(["*3 deselected*"])


def test_background_crash_mid_run_fails_naming_it(mini):
    r = mini.run({"bg2": "crash_after_ready"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background unhealthy*bg2-dlrm*"])
    assert "crashed (exit code 3)" in r.stdout.str()
    assert mini.leftovers() == []


def test_background_never_ready_fails_within_buffer(mini):
    r = mini.run({"bg1": "never_ready"}, "-k", "resnet50", "--durations=1")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background bg1-bert (bert) was not ready within start_time_buffer 4 s*"])
    assert mini.leftovers() == []


def test_background_crash_before_ready(mini):
    r = mini.run({"bg3": "crash_before_ready"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background bg3-rnnt (rnnt) exited with code 7 before it was ready*",
                            "*cannot open engine*"])


def test_main_invalid_fails_with_reason(mini):
    r = mini.run({"main": "invalid"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*result is INVALID: Min duration not satisfied*"])
    rec = mini.results()["tests"][0]
    assert rec["outcome"] == "failed" and rec["result"]["valid"] is False


def test_background_finishing_early_fails(mini):
    r = mini.run({"bg1": "early"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*bg1-bert: finished too early*"])


def test_lenient_downgrades_health(mini):
    r = mini.run({"bg1": "exit_nonzero"}, "-k", "resnet50", "--mig-lenient")
    r.assert_outcomes(passed=1)
    assert mini.results()["tests"][0]["warnings"] == ["bg1-bert: exited with code 4"]


def test_main_without_summary(mini):
    r = mini.run({"main": "no_summary"}, "-k", "resnet50")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*no LoadGen result*no mlperf_log_summary.txt*"])


def test_bad_option_is_usage_error(mini):
    r = mini.pytester.runpytest_subprocess("suites", "--mig-backend=simulatd")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*unknown backend (did you mean 'simulated'?)*"])


def test_sigterm_mid_run_leaves_no_process_and_keeps_logs(mini):
    proc = mini.popen({"main": "never_ready"}, "-k", "resnet50", flags=())
    reports = mini.reports
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(reports.glob("*/*/main.log")):
        time.sleep(0.1)
    assert list(reports.glob("*/*/main.log")), "main never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert mini.leftovers() == []
    (main_log,) = reports.glob("*/*/main.log")
    assert "warming up" in main_log.read_text()
    assert len(list(reports.glob("*/*/bg*.log"))) == 3


def test_isolated_baseline_reports_interference(mini):
    r = mini.run({}, "-k", "resnet50", "--mig-isolated-baseline", "--junitxml=j.xml",
                 "-o", "junit_family=xunit1")  # per-case properties: xunit1 only
    r.assert_outcomes(passed=1)
    rec = mini.results()["tests"][0]
    isolation = rec["isolated"].pop("isolation")
    assert rec["isolated"] == {"valid": True, "metric": "Samples per second", "value": 318100.0}
    assert isolation["method"] == "run before this case's backgrounds were started"
    assert (isolation["backgrounds_paused"], isolation["verified"]) == (0, True)
    assert isolation["gpu_processes_seen"] == {} and isolation["samples"] >= 1
    assert isolation["verification"].startswith("only the main ran: ")
    assert isolation["verification"].endswith(
        "(SIMULATED GPU: its process list holds only the processes registered with the simulator)")
    assert rec["interference"] == 0.0  # the fake reports the same throughput alone and loaded
    assert rec["interference_untrusted"] is None and rec["warnings"] == []
    assert "main-isolated" in rec["commands"]
    xml = (mini.path / "j.xml").read_text()
    assert 'name="mig_interference" value="0.0"' in xml
    assert 'name="mig_result" value="VALID"' in xml


def test_untrusted_baseline_warns_everywhere_and_withholds_interference(mini):
    """A neighbour planted on the simulated GPU during the isolated baseline: NVML's process
    list shows it, the case warns (terminal, record, JUnit, Allure, HTML) and reports no
    interference from that baseline, only the untrusted figure with its reason."""
    pytest.importorskip("allure")
    r = mini.run({"main-isolated": "neighbour"}, "-k", "resnet50", "--mig-isolated-baseline",
                 "--mig-min-duration=2000", "--junitxml=j.xml", "-o", "junit_family=xunit1",
                 "--alluredir=allure")
    r.assert_outcomes(passed=1, warnings=1)
    r.stdout.fnmatch_lines([
        "*pytest-mig: resnet50-Offline-1g.10gb-performance: untrusted baseline: isolated "
        "baseline not verified alone: NVML saw compute processes other than the main: *; "
        "interference not reported (results.json: interference_untrusted)*"])
    rec = mini.results()["tests"][0]
    isolation = rec["isolated"]["isolation"]
    assert isolation["verified"] is False and len(isolation["gpu_processes_seen"]) == 1
    assert rec["interference"] is None
    untrusted = rec["interference_untrusted"]
    assert untrusted["value"] == 0.0  # what the contaminated baseline would have given
    assert untrusted["reason"] == "isolated baseline not verified alone: " + \
        isolation["verification"]
    (warning,) = rec["warnings"]
    assert warning.startswith("untrusted baseline: " + untrusted["reason"])
    xml = (mini.path / "j.xml").read_text()
    assert 'name="mig_interference_untrusted" value="0.0"' in xml
    assert 'name="mig_interference_untrusted_reason" value="isolated baseline not verified' in xml
    assert 'name="mig_warning" value="untrusted baseline: ' in xml
    assert 'name="mig_interference"' not in xml
    page = (mini.run_dir() / "index.html").read_text()
    assert '<td class="bad interference">UNTRUSTED 0.0%: isolated baseline not verified' in page
    (result,) = [json.loads(p.read_text()) for p in (mini.path / "allure").glob("*-result.json")]
    params = {p["name"]: p["value"] for p in result["parameters"]}
    assert params["interference UNTRUSTED"].strip("'").startswith(
        "0.0%: isolated baseline not verified")
    assert "**warning**: untrusted baseline: " in result["description"]


def test_interference_direction():
    from pytest_mig.orchestration.hetero_run import interference
    from pytest_mig.types import BenchmarkResult

    def res(name, value):
        return BenchmarkResult("b", "s", "performance", Path("."), metric_name=name,
                               metric_value=value)
    assert interference(res("Samples per second", 100.0), res("Samples per second", 90.0)) == \
        pytest.approx(0.10)
    lat = "90.0th percentile latency (ns)"
    assert interference(res(lat, 100.0), res(lat, 125.0)) == pytest.approx(0.20)
    assert interference(None, res(lat, 1.0)) is None


def test_session_backgrounds_start_once_and_stop_cleanly(mini):
    r = mini.run({}, "--mig-background=session")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["*session backgrounds: 3 started, 0 restarted, stopped cleanly*"])
    run_dir = mini.run_dir()
    sb = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert sb["healthy"] and sb["starts"] == 3 and [w["exit_code"] for w in sb["workloads"]] == [0] * 3
    recs = mini.results()["tests"]
    assert all(h["healthy"] for rec in recs for h in rec["health"])
    assert mini.leftovers() == []


def test_session_background_dying_fails_that_test_and_is_restarted(mini):
    r = mini.run({"bg2": "crash_after_ready"}, "--mig-background=session", "-k", "bert")
    # bg2 dies during the first main (fails it); the restarted bg2 dies again in the second.
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*bg2-dlrm: ended (exit code 3) before the main ended*"])
    out = r.stdout.str()
    assert "restarted" in out and "UNHEALTHY" in out
    assert mini.leftovers() == []


def test_dry_run_prints_plan_and_runs_nothing(mini):
    r = mini.run({}, "--mig-dry-run", "-k", "resnet50", "-q", "-rs")  # at any verbosity
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*# resnet50-Offline-1g.10gb-performance on GPU 0 (A100-SXM4-80GB)*",
                            "*bg1-bert: bert Offline performance on MIG-*", "*env: CUDA_VISIBLE_DEVICES=MIG-*",
                            "*cmd: *fake_workload.py --script*--role main --name main*",
                            "*dry run: * plan lines in *plan.txt*"])
    assert not list(mini.reports.glob("*/*/main.log"))  # nothing was started


def test_isolated_baselines_first_with_session_backgrounds(mini):
    """One pytest process: every baseline runs before the session pool starts, which starts once."""
    mini.edit_suite("lifetime: per-test", "lifetime: session")
    r = mini.run({}, "-k", "Offline", "--mig-isolated-baseline")
    r.assert_outcomes(passed=2)
    recs = mini.results()["tests"]
    assert [rec["isolated"]["isolation"]["method"] for rec in recs] == [
        "measured before the session backgrounds started (baselines first)"] * 2
    started = min(rec["phases"]["backgrounds_started"] for rec in recs
                  if "backgrounds_started" in rec["phases"])
    for rec in recs:  # each baseline's main had ended before any background started
        log = Path(rec["paths"]["dir"]) / "main-isolated.log"
        assert log.stat().st_mtime <= started
    run_dir = mini.run_dir()
    final = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert (final["starts"], final["pauses"], final["healthy"]) == (3, 0, True)


def test_isolated_baseline_pauses_the_session_pool_under_xdist(mini):
    """Cases spread by xdist at run time: the pool of the GPU is stopped for each baseline."""
    mini.edit_suite("lifetime: per-test", "lifetime: session")
    r = mini.run({}, "-k", "Offline", "--mig-isolated-baseline", "-p", "xdist", "-n", "1")
    r.assert_outcomes(passed=2)
    recs = sorted(mini.results()["tests"], key=lambda rec: rec["phases"]["main_start"])
    methods = [rec["isolated"]["isolation"] for rec in recs]
    assert [m["backgrounds_paused"] for m in methods] == [0, 3]
    assert all(m["method"].startswith("session backgrounds of this GPU stopped") for m in methods)
    run_dir = mini.run_dir()
    (final_path,) = run_dir.glob("session-backgrounds*.json")
    final = json.loads(final_path.read_text())
    assert (final["starts"], final["pauses"], final["healthy"]) == (6, 1, True)
    paused = [w for w in final["workloads"] if w["ended_by"] == "stopped by pytest-mig"]
    assert len(paused) == 6  # three paused for the baseline, three at session end
    assert mini.leftovers() == []
