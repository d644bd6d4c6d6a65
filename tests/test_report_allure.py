"""Allure pieces without a pytest session: environment.properties, categories against the
messages our tests really produce, executor.json, history copy, excerpts, health table, steps."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_mig.errors import ConfigError
from pytest_mig.orchestration.hetero_run import HeteroOutcome
from pytest_mig.report import allure_env
from pytest_mig.report.allure_report import (_steps, commands_text, detail_excerpt, health_table,
                                             tail_text)
from pytest_mig.types import (BenchmarkResult, Case, Finished, HealthReport, RunProfile,
                              WorkloadHealth)

LOGS = Path(__file__).resolve().parent / "data" / "mlperf_logs" / "loadgen-6.0.17"
HEADER = {"run_id": "r1", "backend": "simulated", "simulated": True, "driver": "580.1",
          "nvml_version": "13.580", "gpus": [{"index": 0, "model": "H100-SXM5-80GB"},
                                             {"index": 1, "model": "H100-SXM5-80GB"}],
          "layout": {"0": {"1g.10gb": 7}, "1": {"3g.40gb": 1, "1g.10gb": 4}},
          "harness": "loadgen", "run_profile": None, "python": "3.11.7"}


def case(**kw) -> Case:
    base = dict(suite="dc", benchmark="resnet50", scenario="Offline", profile="1g.10gb",
                mode="performance", gpu_model="H100-SXM5-80GB", background=("bert", "dlrm"),
                background_spec="set", run_profile=RunProfile("smoke", 1000, 1),
                accuracy_fraction=0.99, accuracy_metric="accuracy", accuracy_reference=76.46)
    return Case(**{**base, **kw})


def test_environment_properties(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    path = allure_env.write_environment(tmp_path, HEADER)
    lines = path.read_text().splitlines()
    assert lines[:10] == [
        "GPU\\ backend=SIMULATED (no hardware)", "Driver=n/a (simulated GPU)",
        "NVML\\ version=n/a (simulated GPU)",
        "GPU\\ model=H100-SXM5-80GB", "GPU\\ count=2",
        "MIG\\ layout=GPU 0\\: 7 x 1g.10gb; GPU 1\\: 4 x 1g.10gb + 1 x 3g.40gb",
        "Harness=loadgen", "Run\\ profile=suite default", "Python=3.11.7", "Run\\ id=r1"]
    assert any(x.startswith("package\\ pytest=") for x in lines)
    assert "hunter2" not in path.read_text() and "SECRET_TOKEN" not in path.read_text()
    # a hardware run shows the driver that answered
    real = allure_env.environment({**HEADER, "simulated": False, "backend": "nvml"})
    assert (real["Driver"], real["NVML version"]) == ("580.1", "13.580")


def allure_category(message: str) -> str | None:
    """What Allure does: first category whose messageRegex matches the whole message."""
    for cat in allure_env.CATEGORIES:
        if re.fullmatch(cat["messageRegex"], message):
            return cat["name"]
    return None


def test_categories_match_the_messages_our_tests_produce():
    out = HeteroOutcome(case=case(), test_dir=Path("/r/t"))
    out.result = BenchmarkResult("resnet50", "Offline", "performance", Path("/r"), valid=False,
                                 result_text="INVALID",
                                 invalid_reasons=["Min duration not satisfied"])
    invalid = f"AssertionError: {out.why_invalid()}\nassert False"
    out.result = BenchmarkResult("resnet50", "Offline", "accuracy", Path("/r"),
                                 accuracy_metric="accuracy", accuracy_value=70.0)
    accuracy = f"AssertionError: {out.why_accuracy()}\nassert False"
    out.health = HealthReport([WorkloadHealth("bg2-dlrm", "dlrm", 0, 1, 2, 3, -1, False,
                                              ["exited with code 3"])])
    unhealthy = f"AssertionError: {out.why_unhealthy()}\nassert False"
    regression = ("pytest_mig.report.compare.RegressionFailure: r: performance regression "
                  "against the last passed run (--mig-compare-fail):\n  Samples per second ...")
    assert [allure_category(m) for m in (regression, invalid, accuracy, unhealthy)] == [
        "Performance regression (--mig-compare-fail)", "INVALID LoadGen result",
        "Accuracy below target", "Background workload unhealthy"]
    assert allure_category("Failed: Timeout (>30.0s) from pytest-timeout.") == "Timeout"
    assert allure_category("pytest_mig.orchestration.hetero_run.WorkloadFailure: main did not "
                           "finish within 900 s; "
                           "stopped. log: /x") == "Timeout"
    assert allure_category("pytest_mig.orchestration.hetero_run.WorkloadFailure: background "
                           "bg3-rnnt (rnnt) exited "
                           "with code 7 before it was ready; log: x\n--- last lines ---\nboom"
                           ) == "Infrastructure error"
    assert allure_category("pytest_mig.errors.HarnessError: harness 'command' needs a command "
                           "template") == "Infrastructure error"
    assert allure_category("AssertionError: assert 1 == 2") is None


def test_categories_file(tmp_path: Path):
    data = json.loads(allure_env.write_categories(tmp_path).read_text())
    assert [c["name"] for c in data] == [c["name"] for c in allure_env.CATEGORIES]
    assert all(set(c) == {"name", "messageRegex", "matchedStatuses"} for c in data)


def test_executor_per_ci_system(tmp_path: Path):
    gh = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
          "GITHUB_REPOSITORY": "org/repo", "GITHUB_RUN_ID": "77", "GITHUB_RUN_NUMBER": "12",
          "GITHUB_WORKFLOW": "nightly", "GITHUB_TOKEN": "ghs_secret"}
    assert allure_env.executor(gh) == {
        "name": "GitHub Actions", "type": "github", "url": "https://github.com/org/repo",
        "buildOrder": "12", "buildName": "nightly #12",
        "buildUrl": "https://github.com/org/repo/actions/runs/77"}
    jenkins = {"JENKINS_URL": "https://ci/", "BUILD_NUMBER": "5", "JOB_NAME": "mig",
               "BUILD_URL": "https://ci/job/mig/5/"}
    assert allure_env.executor(jenkins) == {
        "name": "Jenkins", "type": "jenkins", "url": "https://ci/", "buildOrder": "5",
        "buildName": "mig #5", "buildUrl": "https://ci/job/mig/5/"}
    assert allure_env.executor({"CI": "true"})["type"] == "ci"
    assert allure_env.executor({"HOME": "/root"}) is None
    assert allure_env.write_executor(tmp_path, {}) is None
    assert not (tmp_path / "executor.json").exists()
    path = allure_env.write_executor(tmp_path, gh)
    assert "ghs_secret" not in path.read_text()


def test_history_copy_from_report_or_its_history_folder(tmp_path: Path):
    report = tmp_path / "allure-report"
    (report / "history").mkdir(parents=True)
    (report / "history" / "history.json").write_text('{"abc": {}}')
    (report / "history" / "history-trend.json").write_text("[1]")
    dest = allure_env.copy_history(report, tmp_path / "results")
    assert sorted(p.name for p in dest.iterdir()) == ["history-trend.json", "history.json"]
    assert (dest / "history-trend.json").read_text() == "[1]"
    assert allure_env.history_source(report / "history") == report / "history"
    with pytest.raises(ConfigError, match="--mig-allure-history=.*: no history/history.json there"):
        allure_env.copy_history(tmp_path / "nothing", tmp_path / "results")


def test_detail_excerpt():
    text = detail_excerpt(LOGS / "Offline-invalid" / "mlperf_log_detail.txt")
    lines = text.splitlines()
    assert lines[1:6] == [
        "loadgen_version: 6.0.17 @ d6147c7eb7", "result_validity: INVALID", "errors: 0",
        "warnings: 1", "  line 66: warning_generic_message: Logging allocation detected: tid: "
                       "5955 reserved_entries: 1024 max_entries: 1113"]
    assert "effective settings:" in lines and "  scenario: Offline" in lines
    assert "  min_duration_ms: 1000" in lines
    bad = detail_excerpt(LOGS / "Offline-valid" / "mlperf_log_summary.txt")
    assert "unreadable" in bad and "not a LoadGen mlperf_log_detail.txt" in bad


def test_tail_text_cuts_the_head(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("a" * 100 + "END")
    assert tail_text(log, limit=10) == "[... first 93 bytes cut ...]\n" + "a" * 7 + "END"
    assert tail_text(log, limit=1000) == "a" * 100 + "END"


def _outcome(tmp_path: Path) -> HeteroOutcome:
    out = HeteroOutcome(case=case(), test_dir=tmp_path)
    t0 = 1000.0
    out.phases = {"backgrounds_started": t0 + 0.1, "backgrounds_ready": t0 + 2.0,
                  "main_start": t0 + 2.1, "main_end": t0 + 10.0}
    out.backgrounds = [Finished("bg1-bert", t0, t0 + 1.5, t0 + 12.0, 0, tmp_path / "bg1.log"),
                       Finished("bg2-dlrm", t0 + 0.05, t0 + 2.0, t0 + 9.0, 3, tmp_path / "bg2.log")]
    out.main = Finished("main", t0 + 2.1, t0 + 3.0, t0 + 10.0, 0, tmp_path / "main.log")
    out.result = BenchmarkResult("resnet50", "Offline", "performance", tmp_path, valid=True,
                                 result_text="VALID")
    out.health = HealthReport([
        WorkloadHealth("bg1-bert", "bert", t0, t0 + 1.5, t0 + 12.0, 0, 2.0, True),
        WorkloadHealth("bg2-dlrm", "dlrm", t0 + 0.05, t0 + 2.0, t0 + 9.0, 3, -1.0, False,
                       ["finished too early: 1.00 s before the main ended (raise its min "
                        "duration)", "exited with code 3"])])
    out.commands = {"bg1-bert": ["prog", "--name", "bg 1"], "main": ["prog", "--x=1"]}
    return out


def test_health_table(tmp_path: Path):
    lines = health_table(_outcome(tmp_path)).splitlines()
    assert lines[0].split() == ["workload", "benchmark", "start", "ready", "end", "exit",
                                "margin", "healthy", "problems"]
    assert lines[1].split()[:8] == ["bg1-bert", "bert", "-2.10s", "-0.60s", "+9.90s", "0",
                                    "+2.00s", "yes"]
    assert lines[2].split()[:8] == ["bg2-dlrm", "dlrm", "-2.05s", "-0.10s", "+6.90s", "3",
                                    "-1.00s", "NO"]
    assert lines[2].endswith("finished too early: 1.00 s before the main ended (raise its min "
                             "duration); exited with code 3")
    assert lines[-1] == "times relative to the main's start; margin = background end - main end"


def test_commands_text_is_shell_quoted():
    assert commands_text({"bg1-bert": ["prog", "--name", "bg 1"], "main": ["prog"]}) == (
        "# bg1-bert\nprog --name 'bg 1'\n\n# main\nprog\n\n")


def test_steps_follow_the_phases(tmp_path: Path):
    steps = _steps(_outcome(tmp_path))
    assert [(s[0], s[1], s[2], s[3]) for s in steps] == [
        ("start 2 background workload(s)", 1000.0, 1000.1, True),
        ("backgrounds ready 2/2", 1000.1, 1002.0, True),
        ("main resnet50 Offline performance", 1002.1, 1010.0, True),
        ("background health check", 1010.0, 1012.0, False)]
    assert [c[0] for c in steps[1][5]] == ["bg1-bert ready after 1.50 s",
                                           "bg2-dlrm ready after 1.95 s"]
    assert steps[3][4].startswith("bg2-dlrm: finished too early")


def test_steps_when_a_background_never_became_ready(tmp_path: Path):
    out = _outcome(tmp_path)
    out.phases = {"backgrounds_started": 1000.1}
    out.backgrounds[1] = Finished("bg2-dlrm", 1000.05, None, 1004.0, 7, tmp_path / "bg2.log")
    out.main, out.result, out.health = None, None, HealthReport()
    steps = _steps(out)
    assert [(s[0], s[3]) for s in steps] == [("start 2 background workload(s)", True),
                                             ("backgrounds ready 1/2", False)]
    assert [(c[0], c[3]) for c in steps[1][5]] == [("bg1-bert ready after 1.50 s", True),
                                                   ("bg2-dlrm never ready", False)]


def test_figures_show_headline_in_ms_aggregate_and_gpm_activity():
    from types import SimpleNamespace

    from pytest_mig.report.allure_report import figures
    from pytest_mig.results.slices import aggregate, slice_figure
    from pytest_mig.types import BenchmarkResult
    res = BenchmarkResult(benchmark="rnnt", scenario="SingleStream", mode="performance",
                          result_dir=Path("."), valid=True, result_text="VALID",
                          metric_name="90th percentile latency (ns)", metric_value=4.5e7)
    bg = BenchmarkResult(benchmark="bert", scenario="Offline", mode="performance",
                         result_dir=Path("."), valid=True, result_text="VALID",
                         metric_name="Samples per second", metric_value=120.0)
    agg = aggregate([slice_figure("main", "main", "rnnt", "SingleStream", "1g.10gb", res),
                     slice_figure("bg1-bert", "background", "bert", "Offline", "1g.10gb", bg)])
    out = SimpleNamespace(result=res, interference=0.125, slices=agg, accuracy_target=0.0,
                          activity={"main": {"sm_util_pct": 96.6, "sm_occupancy_pct": 14.3,
                                             "dram_bw_util_pct": 16.4, "tensor_util_pct": None},
                                    "note": "ignored: not a slice"})
    shown = figures(out)
    assert shown["headline"] == "90th percentile latency (ms) = 45"
    assert shown["interference"] == "12.5%"
    assert shown["aggregate bert"] == "120 samples/s over 1 slice(s)"
    assert shown["activity main"] == "SM 96.6%, occupancy 14.3%, DRAM BW 16.4%, tensor n/a"
    assert "activity note" not in shown
