"""Contract test of `--harness=nvidia` without NVIDIA's stack: a throwaway closed/NVIDIA-like
directory whose Makefile's run_harness target runs tests/programs/fake_nvidia_harness.py
with $(RUN_ARGS), driven through whole pytest sessions on the simulated GPU."""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "programs" / "fake_nvidia_harness.py"
SYSTEM = "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"

# The recipes hand $(RUN_ARGS) to make's own shell, as NVIDIA's Makefile does.
MAKEFILE = textwrap.dedent("""\
    PYTHON := {python}
    FAKE := {fake}
    .PHONY: run_harness run_audit_test04
    run_harness:
    \t@$(PYTHON) $(FAKE) $(RUN_ARGS) --action=run_harness
    run_audit_test04:
    \t@$(PYTHON) $(FAKE) $(RUN_ARGS) --action=run_audit_test04
""")


@pytest.fixture
def project(mini_project):
    """The nvidia suite; closed_NVIDIA/ holds the Makefile whose targets run the fake harness."""
    project = mini_project("nvidia")
    project.root = project.path / "closed_NVIDIA"
    project.root.mkdir()
    (project.root / "Makefile").write_text(MAKEFILE.format(python=shlex.quote(sys.executable),
                                                           fake=shlex.quote(str(FAKE))))
    project.harness = ["--harness=nvidia", f"--mlperf-root={project.root}"]
    return project


def run(project, behaviour: dict, *extra: str):
    (project.root / "behaviour.json").write_text(json.dumps(behaviour))
    return project.run(None, *extra)


def calls(root: Path) -> list[dict]:
    path = root / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def logs_under(log_dir: Path) -> list[str]:
    """<benchmark dir>/<scenario> of every LoadGen summary under a LOG_DIR."""
    return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in log_dir.rglob("mlperf_log_summary.txt"))


def test_hetero_case_through_make(project):
    r = run(project, {})
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["PASSED *test_hetero?resnet50-Offline-1g.10gb-performance?",
                            "PASSED *test_hetero?resnet50-Offline-1g.10gb-accuracy?"])
    got = calls(project.root)
    assert len(got) == 8  # per case: the main and three backgrounds
    recs = {t["mode"]: t for t in project.results()["tests"]}
    for mode in ("performance", "accuracy"):
        test_dir = Path(recs[mode]["paths"]["dir"])
        mine = [c for c in got if c["LOG_DIR"] == str(test_dir / "main")
                or Path(c["LOG_DIR"]).parent == test_dir / "background_logs"]
        (main,) = [c for c in mine if c["role"] == "main"]
        bgs = sorted((c for c in mine if c["role"] == "background"), key=lambda c: c["benchmark"])
        extra = ["--test_mode=AccuracyOnly"] if mode == "accuracy" else []
        assert main["argv"] == ["--benchmarks=resnet50", "--scenarios=Offline", "--config_ver=hetero",
                                "--min_duration=400", *extra, "--action=run_harness"]
        assert main["cwd"] == str(project.root)
        bg_ms = recs[mode]["background_min_duration_ms"]
        assert [c["argv"] for c in bgs] == [
            [f"--benchmarks={b}", "--scenarios=Offline", f"--config_ver={v}", f"--min_duration={bg_ms}",
             "--min_query_count=1", "--action=run_harness"]
            for b, v in (("bert", "hetero"), ("dlrm", "hetero_high_accuracy"), ("rnnt", "hetero_suite"))]
        # Every workload pinned to its own MIG device; the main's is not a background's.
        devices = [main["CUDA_VISIBLE_DEVICES"]] + [c["CUDA_VISIBLE_DEVICES"] for c in bgs]
        assert all(d.startswith("MIG-") for d in devices) and len(set(devices)) == 4
        # Backgrounds logged beside the main's LOG_DIR, never into it, each in its own folder.
        assert logs_under(test_dir / "main") == ["resnet50/Offline"]
        assert logs_under(test_dir / "background_logs") == ["bert-99/Offline", "dlrm-99.9/Offline",
                                                           "rnnt/Offline"]
        assert {Path(c["LOG_DIR"]).name for c in bgs} == {"bg1-bert", "bg2-dlrm", "bg3-rnnt"}
        assert recs[mode]["commands"]["main"][:2] == ["make", "run_harness"]
    # Every background's figure is read from where the adapter had it log (LOG_DIR), and
    # summed into the aggregate: none is left out, nothing to warn about.
    slices = recs["performance"]["slices"]
    bg_slices = [s for s in slices["slices"] if s["role"] == "background"]
    assert [s["name"] for s in bg_slices] == ["bg1-bert", "bg2-dlrm", "bg3-rnnt"]
    assert all(s["valid"] and s["samples_per_s"] and s["basis"] == "own run" and not s["errors"]
               for s in bg_slices), bg_slices
    assert set(slices["benchmarks"]) == {"resnet50", "bert", "dlrm", "rnnt"}
    assert recs["performance"]["warnings"] == []
    perf = recs["performance"]["result"]
    assert (perf["valid"], perf["metric"], perf["value"]) == (True, "Samples per second", 318100.0)
    assert Path(perf["files"]["summary"]).parent.parent.parent.name == SYSTEM
    acc = recs["accuracy"]["result"]
    assert (acc["accuracy_metric"], acc["accuracy"]) == ("accuracy", 76.042)
    assert Path(acc["files"]["accuracy"]).name == "accuracy.txt"
    assert project.leftovers() == []


def test_a_background_without_a_figure_is_a_warning_everywhere(project):
    """A background that exits 0 but leaves no LoadGen logs: the case passes (its health is
    fine) and says, on the terminal, in results.json, JUnit and Allure, which slice the
    aggregate leaves out and why."""
    pytest.importorskip("allure")
    r = run(project, {"background:dlrm": "no_logs"}, "-m", "performance", "--junitxml=j.xml",
            "-o", "junit_family=xunit1", "--alluredir=allure")
    r.assert_outcomes(passed=1, warnings=1)
    r.stdout.fnmatch_lines(["*pytest-mig: resnet50-Offline-1g.10gb-performance: slice bg2-dlrm "
                            "(dlrm on 1g.10gb) has no figure and is left out of the aggregate: "
                            "no LoadGen logs for dlrm Offline under *background_logs/bg2-dlrm*"])
    rec = project.results()["tests"][0]
    (warning,) = rec["warnings"]
    assert warning.startswith("slice bg2-dlrm (dlrm on 1g.10gb) has no figure")
    assert set(rec["slices"]["benchmarks"]) == {"resnet50", "bert", "rnnt"}
    xml = (project.path / "j.xml").read_text()
    assert 'name="mig_warning" value="slice bg2-dlrm (dlrm on 1g.10gb) has no figure' in xml
    (result,) = [json.loads(p.read_text()) for p in (project.path / "allure").glob("*-result.json")]
    assert "**warning**: slice bg2-dlrm (dlrm on 1g.10gb) has no figure" in result["description"]


def test_main_bad_exit(project):
    r = run(project, {"main": "exit2"}, "-m", "performance")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*main resnet50 Offline exited with code 2; log: *main.log*",
                            "*fatal: CUDA error 700 (simulated)*"])
    assert project.leftovers() == []


def test_background_never_ready(project):
    r = run(project, {"background:dlrm": "never_ready"}, "-m", "performance")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*background bg2-dlrm (dlrm) was not ready within start_time_buffer 4 s*"])
    assert r.duration < 60  # failed at the 4 s start buffer, not at --mig-main-timeout (900 s)
    # The main never started: nothing ran after the backgrounds.
    assert sorted(c["role"] for c in calls(project.root)) == ["background"] * 3
    assert project.leftovers() == []


def test_main_invalid_summary(project):
    r = run(project, {"main": "invalid"}, "-m", "performance")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*main resnet50 Offline result is INVALID: Min duration not satisfied*"])
    rec = project.results()["tests"][0]
    assert (rec["result"]["valid"], rec["result"]["value"]) == (False, 428937.0)


def test_main_without_logs(project):
    r = run(project, {"main": "no_logs"}, "-m", "performance")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*no LoadGen result (no LoadGen logs for resnet50 Offline under *main*"])


def test_audit_test04(project):
    r = run(project, {}, "-m", "performance", "--mlperf-action=run_audit_test04")
    r.assert_outcomes(passed=1)
    (main,) = [c for c in calls(project.root) if c["role"] == "main"]
    assert main["action"] == "run_audit_test04"
    files = project.results()["tests"][0]["result"]["files"]
    assert Path(files["audit_performance"]).parent.name == "TEST04"


def test_audit_test04_fail(project):
    r = run(project, {"main": "audit_fail"}, "-m", "performance",
            "--mlperf-action=run_audit_test04")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*result is INVALID: TEST04 FAIL: reference score 5319.42 vs test score 4711.3*"])


def test_missing_mlperf_root(project):
    project.harness, project.flags = ["--harness=nvidia"], []
    r = project.run(None, "-m", "performance")
    r.assert_outcomes(errors=1)
    r.stdout.fnmatch_lines(["*HarnessError: --harness=nvidia needs --mlperf-root DIR*"])
    assert calls(project.root) == []


SHIPPED = Path(__file__).resolve().parents[1] / "suites" / "datacenter"


@pytest.fixture
def shipped(project):
    """The repository's datacenter suite as shipped (session backgrounds), in place of the mini one."""
    for f in project.suites.iterdir():
        f.unlink()
    for name in ("suite.yaml", "test_datacenter.py"):
        (project.suites / name).write_text((SHIPPED / name).read_text())
    return project


def test_session_backgrounds_stopped_by_us_are_healthy(shipped):
    """NVIDIA's `make run_harness` dies of SIGTERM: at session end that is our stop, not a failure."""
    r = run(shipped, {}, "-k", "resnet50 and Offline and performance")
    r.assert_outcomes(passed=1)
    assert r.ret == 0
    r.stdout.fnmatch_lines(["*session backgrounds: 6 started, 0 restarted, stopped cleanly*"])
    run_dir = shipped.run_dir()
    final = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert final["healthy"] and len(final["workloads"]) == 6
    assert {w["ended_by"] for w in final["workloads"]} == {"stopped by pytest-mig"}
    assert all(w["exit_code"] != 0 for w in final["workloads"])  # make died of the signal
    # Session backgrounds log under the GPU's background_logs/, one folder each; NVIDIA's
    # harness writes its LoadGen logs only when it ends, so no figure is readable during
    # the case: each slice says so instead of vanishing from the aggregate.
    got = [c for c in calls(shipped.root) if c["role"] == "background"]
    assert len({c["LOG_DIR"] for c in got}) == 6
    assert all(Path(c["LOG_DIR"]).parent.name == "background_logs" for c in got)
    rec = shipped.results()["tests"][0]
    assert len(rec["warnings"]) == 6 and all(
        "has no figure and is left out of the aggregate: no LoadGen logs for " in w
        for w in rec["warnings"]), rec["warnings"]
    r.stdout.fnmatch_lines(["*slice bg1-* has no figure and is left out of the aggregate*"])
    assert shipped.leftovers() == []


def test_session_background_dying_during_the_main_fails(shipped):
    r = run(shipped, {"background:bert": "crash_during_main"},
            "-k", "resnet50 and Offline and performance", "--mig-min-duration=3000")
    r.assert_outcomes(failed=1)
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*bg*-bert: ended (exit code *) before the main ended*"])
    assert shipped.leftovers() == []
