"""Whole pytester sessions with the reporting plugin: Allure results (labels, parameters, steps,
attachments, run files), the compare gate failing a regressed case, history, the HTML page."""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from pngread import read_png

DATA = Path(__file__).resolve().parent / "data" / "mlperf_logs" / "loadgen-6.0.17" / "Server-valid"
GPU = "A100-SXM4-80GB"
HEADLINE = 1983.38  # Completed samples per second in Server-valid's summary
RESNET = "resnet50-Offline-1g.10gb-performance"
BERT = "bert-Offline-1g.10gb-performance"

# The wiring of plugin.py / case_fixtures.py, done from a conftest until the plugin does it itself
# (then the plugin named "mig-report" is already registered and this shim stands aside).
CONFTEST = textwrap.dedent("""
    import pytest
    from pytest_mig.surface import report_hooks

    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        if config.pluginmanager.has_plugin("mig-report"):
            return
        from pytest_mig.surface.case_fixtures import SESSION_KEY
        from pytest_mig.report import allure_report
        from pytest_mig.report.timeline import case_timeline
        import pytest_mig.orchestration.hetero_run as hetero
        session = config.stash[SESSION_KEY]
        config.pluginmanager.register(report_hooks.ReportPlugin(config, session), "mig-report")
        run, describe, slots = hetero.run, allure_report.describe, []

        def sampled(case, slot, harness, test_dir, settings, progress=None, out=None):
            slots.append(slot)
            with case_timeline(session.settings.sample_interval_s, session, slot, out,
                               progress=progress):
                return run(case, slot, harness, test_dir, settings, progress=progress, out=out)

        def described(config, out, session, slot=None):
            describe(config, out, session, slot=slot or slots[-1])
        hetero.run, allure_report.describe = sampled, described
""")

PROGRAM = textwrap.dedent("""
    import argparse, shutil, time
    from pathlib import Path
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--log-dir")
    ap.add_argument("--min-duration-ms", type=int)
    a = ap.parse_args()
    out = Path(a.log_dir)
    out.mkdir(parents=True, exist_ok=True)
    print("[prog] Starting running actual test.", flush=True)
    time.sleep(a.min_duration_ms / 1000)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        shutil.copy(Path(a.data) / name, out / name)
    print("[prog] done", flush=True)
""")


def wire(root: Path) -> str:
    """The conftest wiring into root/suites and prog.py into root; the --mig-command running
    prog.py, which copies real LoadGen logs."""
    (root / "suites" / "conftest.py").write_text(CONFTEST)
    (root / "prog.py").write_text(PROGRAM)
    return (f"{shlex.quote(sys.executable)} {shlex.quote(str(root / 'prog.py'))} "
            f"--data {shlex.quote(str(DATA))} --log-dir {{log_dir}} "
            "--min-duration-ms {min_duration_ms}")


def report_project(mini_project):
    """The report suite, wired (see wire)."""
    project = mini_project("report")
    project.flags = ["--mig-main-startup=1.5", f"--mig-reports={project.reports}",
                     "--mig-sample-interval=0.05", "-rA"]
    project.command = wire(project.path)
    return project


@pytest.fixture
def project(mini_project):
    return report_project(mini_project)


def run(project, *extra: str):
    return project.run(None, *extra)


def history_line(case: str, value: float, run_id: str, outcome: str = "passed") -> str:
    return json.dumps({"case": case, "run_id": run_id, "timestamp": "2026-01-01T00:00:00",
                       "outcome": outcome, "gpu_model": GPU, "backend": "simulated",
                       "metric": "Completed samples per second", "value": value,
                       "latencies_ns": {"p99": 261696.0}, "p99_ns": 261696.0})


def allure_results(alluredir: Path) -> dict[str, dict]:
    out = {}
    for p in alluredir.glob("*-result.json"):
        data = json.loads(p.read_text())
        out[data["name"].partition("[")[2].rstrip("]")] = data
    return out


def test_allure_results_and_compare_gate_fail_a_regressed_case(project):
    reports = project.path / "reports"
    reports.mkdir()
    # A previous run where resnet50 was 20% faster: this run's value is a regression.
    (reports / "history.jsonl").write_text(
        history_line(RESNET, HEADLINE * 1.2, "old") + "\n" + history_line(BERT, HEADLINE, "old")
        + "\n")
    alluredir = project.path / "allure-results"
    r = run(project, f"--alluredir={alluredir}", "--mig-compare-fail=throughput:5%,p99:10%")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines([
        f"{RESNET}: performance regression against the last passed run (--mig-compare-fail):",
        "  Completed samples per second 1983.38 vs baseline 2380.06 (-16.7%; higher is better, "
        "threshold 5%)",
        "*= pytest-mig compare =*",
        "baseline: last passed run; fail beyond: throughput 5%, p99 10%",
        "case * metric * baseline * value * change*",
        f"{BERT} * Completed samples per second * 1983.38 * 1983.38 * +0.0% * ok",
        f"{RESNET} * Completed samples per second * 2380.06 * 1983.38 * -16.7% * REGRESSED (> 5%)",
        f"{RESNET} * p99 latency (ns) * 261696 * 261696 * +0.0% * ok",
        f"FAILED *{RESNET}*",
    ])

    results = allure_results(alluredir)
    assert set(results) == {RESNET, BERT}
    res = results[RESNET]
    assert res["status"] == "failed"
    assert "performance regression against the last passed run" in res["statusDetails"]["message"]
    assert results[BERT]["status"] == "passed"
    labels = {(x["name"], x["value"]) for x in res["labels"]}
    assert {("epic", "mini"), ("feature", "resnet50"), ("story", "Offline"), ("tag", "performance"),
            ("tag", "simulated"), ("tag", "partition:mig")} <= labels
    params = {x["name"]: x["value"] for x in res["parameters"]}
    assert {k: params[k] for k in ("MIG profile", "test mode", "GPU model", "partition kind",
                                   "harness", "run profile", "GPU backend", "background")} == {
        "MIG profile": "'1g.10gb'", "test mode": "'performance'", "GPU model": f"'{GPU}'",
        "partition kind": "'mig'", "harness": "'command'", "run profile": "'smoke'",
        "GPU backend": "'simulated'", "background": "'bert + dlrm'"}
    raw = {x["name"]: x for x in res["parameters"]}
    assert raw["mig_case"]["mode"] == "hidden" and raw["mig_case"]["value"] == f"'{RESNET}'"
    assert raw["headline"]["value"] == "'Completed samples per second = 1983'"
    assert raw["headline"]["excluded"] is True  # figures never change the historyId
    assert raw["aggregate resnet50"]["excluded"] is True
    assert "- headline: Completed samples per second = 1983" in res["description"]
    assert "SIMULATED GPU" in res["description"]
    names = [a["name"] for a in res["attachments"]]
    for expected in ("mlperf_log_summary.txt", "detail excerpt", "background health", "commands",
                     "GPU metric timeline (CSV)", "GPU metric timeline", "main.log",
                     "bg1-bert.log (tail)", "bg2-dlrm.log (tail)"):
        assert expected in names, (expected, names)
    att = {a["name"]: alluredir / a["source"] for a in res["attachments"]}
    assert "result_validity: VALID" in att["detail excerpt"].read_text()
    assert "effective settings:\n" in att["detail excerpt"].read_text()
    health = att["background health"].read_text()
    assert health.splitlines()[0].split() == ["workload", "benchmark", "start", "ready", "end",
                                              "exit", "margin", "healthy", "problems"]
    assert [line.split()[:2] for line in health.splitlines()[1:3]] == [["bg1-bert", "bert"],
                                                                       ["bg2-dlrm", "dlrm"]]
    assert "prog.py" in att["commands"].read_text() and "# main\n" in att["commands"].read_text()
    png = read_png(att["GPU metric timeline"])
    assert png.width == 1000 and len(png.colors) > 3
    csv = att["GPU metric timeline (CSV)"].read_text()
    assert "# source: SIMULATED" in csv and "# phase: main_start unix=" in csv

    steps = [s["name"] for s in res["steps"]]
    assert steps == ["start 2 background workload(s)", "backgrounds ready 2/2",
                     "main resnet50 Offline performance", "background health check"]
    ready = res["steps"][1]
    assert [s["name"].split()[0] for s in ready["steps"]] == ["bg1-bert", "bg2-dlrm"]
    assert all(s["status"] == "passed" and s["start"] <= s["stop"] for s in res["steps"])
    main_step = res["steps"][2]
    assert res["start"] - 5000 < main_step["start"] < main_step["stop"] <= res["stop"] + 5000

    env = (alluredir / "environment.properties").read_text()
    assert f"GPU\\ model={GPU}" in env and "GPU\\ count=1" in env
    assert "GPU\\ backend=SIMULATED (no hardware)" in env and "package\\ pytest=" in env
    cats = json.loads((alluredir / "categories.json").read_text())
    assert cats[0]["name"].startswith("Performance regression")

    # history: the old lines plus one per case of this run, the regressed one as failed
    lines = [json.loads(x) for x in (reports / "history.jsonl").read_text().splitlines()]
    assert [(x["case"], x["outcome"]) for x in lines[2:]] == sorted(
        [(BERT, "passed"), (RESNET, "failed")])
    assert lines[2]["value"] == HEADLINE and lines[2]["p99_ns"] == 261696.0
    rd = project.run_dir()
    assert {x["run_id"] for x in lines[2:]} == {rd.name}
    record = json.loads((rd / f"test_hetero_{RESNET}" / "record.json").read_text())
    assert record["outcome"] == "failed" and "performance regression" in record["message"]
    page = (rd / "index.html").read_text()
    assert f'data-case="{RESNET}"' in page and f'data-case="{BERT}"' in page
    assert "-16.7% vs 2380.06" in page and page.count('<svg class="bars"') == 2
    compare = json.loads((rd / "compare.json").read_text())
    assert compare["thresholds"] == {"throughput": 5.0, "p99": 10.0}


def test_history_carries_over_between_runs(project):
    alluredir = project.path / "allure-results"
    first = run(project, f"--alluredir={alluredir}", "-k", "resnet50")
    first.assert_outcomes(passed=1)
    history_id = allure_results(alluredir)[RESNET]["historyId"]

    # A generated report from before: its history/ folder is what trends are made of.
    previous = project.path / "allure-report"
    (previous / "history").mkdir(parents=True)
    trend = [{"buildOrder": 1, "data": {"passed": 1, "failed": 0, "total": 1}}]
    (previous / "history" / "history-trend.json").write_text(json.dumps(trend))
    (previous / "history" / "history.json").write_text(json.dumps({history_id: {"items": []}}))

    second_dir = project.path / "allure-results-2"
    second = run(project, f"--alluredir={second_dir}", f"--mig-allure-history={previous}",
                 "--mig-compare=median:3", "-k", "resnet50", "-v")
    second.assert_outcomes(passed=1)
    assert allure_results(second_dir)[RESNET]["historyId"] == history_id
    assert json.loads((second_dir / "history" / "history-trend.json").read_text()) == trend
    assert history_id in json.loads((second_dir / "history" / "history.json").read_text())
    second.stdout.fnmatch_lines([
        "baseline: median of the last 3 passed runs; report only",
        f"{RESNET} * Completed samples per second * 1983.38 * 1983.38 * +0.0%",
        "pytest-mig: allure history copied to *allure-results-2*history"])
    history = (project.path / "reports" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and len({json.loads(x)["run_id"] for x in history}) == 2


def test_bad_options_are_usage_errors(project):
    r = run(project, "--mig-compare-fail=thruput:5%")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*unknown metric 'thruput' (did you mean 'throughput'?)*"])
    r = run(project, "--mig-compare=median:x")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--mig-compare=median:x: expected median:N with N >= 1 runs*"])
    r = run(project, "--mig-allure-history=nowhere")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--mig-allure-history=nowhere needs --alluredir=DIR*"])
    r = run(project, "--mig-sample-interval=-1")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--mig-sample-interval=-1: must be >= 0 seconds (0 turns sampling "
                            "off)*"])


def test_gate_table_and_history_under_xdist(project):
    reports = project.path / "reports"
    reports.mkdir()
    (reports / "history.jsonl").write_text(history_line(RESNET, HEADLINE * 1.2, "old") + "\n")
    r = run(project, "-n", "2", "--mig-compare-fail=throughput:5%")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines([  # the table is printed once, by the controller, from worker reports
        f"{BERT} * Completed samples per second * - * 1983.38 * - * no baseline",
        f"{RESNET} * Completed samples per second * 2380.06 * 1983.38 * -16.7% * REGRESSED (> 5%)"])
    assert r.stdout.str().count("= pytest-mig compare =") == 1
    lines = [json.loads(x) for x in (reports / "history.jsonl").read_text().splitlines()]
    assert sorted((x["case"], x["outcome"]) for x in lines[1:]) == [(BERT, "passed"),
                                                                     (RESNET, "failed")]
    assert (project.run_dir() / "index.html").exists()
