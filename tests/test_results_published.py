"""Published MLPerf submissions as baselines: layout discovery, variant choice, --mig-compare PATH.

Data: NVIDIA's whole v4.1 H200-SXM-141GBx8_TRT submission in the corpus (results and
compliance folders as published), and the v1.1 MIG system under tests/data/mlperf_logs.
Expected numbers were copied by hand from the files.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import ConfigError
from pytest_mig.harness.nvidia_logs import find_run_logs
from pytest_mig.report.compare import Baselines, CompareSpec
from pytest_mig.report.history import HistoryEntry
from pytest_mig.report.published import PublishedBaselines, is_submission
from pytest_mig.results.layout import prefer_variant, submission_runs, variant_name

DATA = Path(__file__).parent / "data"
NVIDIA_V41 = DATA / "mlperf_corpus" / "v4.1" / "NVIDIA" / "closed"
H200 = NVIDIA_V41 / "results" / "H200-SXM-141GBx8_TRT"
V11_MIG = DATA / "mlperf_logs" / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"
BERT_V11_SERVER = 379.93  # "Scheduled samples per second : 379.93" in its bert-99 Server summary


def entry(benchmark: str, scenario: str, metric: str, value: float, fraction: float | None = 0.99,
          accuracy: float | None = None) -> HistoryEntry:
    return HistoryEntry(case=f"{benchmark}-{scenario}-7g.141gb-performance", run_id="now", timestamp="",
                        outcome="passed", gpu_model="H200-141GB", backend="nvml", benchmark=benchmark,
                        scenario=scenario, metric=metric, value=value, accuracy_fraction=fraction,
                        accuracy_metric="f1" if accuracy is not None else None, accuracy=accuracy)


def test_submission_layout_is_discovered_with_compliance_folders():
    runs = {(r.benchmark_dir, r.scenario): r for r in submission_runs(NVIDIA_V41) if r.system == H200.name}
    bert = runs[("bert-99.9", "Offline")]
    assert bert.performance == H200 / "bert-99.9" / "Offline" / "performance" / "run_1"
    assert bert.accuracy == H200 / "bert-99.9" / "Offline" / "accuracy"
    assert sorted(bert.compliance) == ["TEST01", "TEST05"]
    assert bert.compliance["TEST01"] == NVIDIA_V41 / "compliance" / H200.name / "bert-99.9" / "Offline" / "TEST01"
    assert {("bert-99", "Server"), ("llama2-70b-99", "Offline"), ("resnet50", "Server")} <= set(runs)
    # The system folder itself is a submission too (its name is the system).
    assert {r.system for r in submission_runs(H200)} == {H200.name}
    assert is_submission(H200) and not is_submission(DATA / "mig-parted")


@pytest.mark.parametrize("benchmark, fraction, want", [
    ("bert", 0.999, "bert-99.9"), ("bert", 0.99, "bert-99"), ("bert-99.9", None, "bert"),
    ("llama2-70b", 0.999, "llama2-70b-99.9"), ("resnet", 0.99, "resnet50-99")])
def test_variant_name(benchmark, fraction, want):
    assert variant_name(benchmark, fraction) == want


def test_prefer_variant_takes_the_wanted_one_not_the_first():
    assert prefer_variant(["bert-99", "bert-99.9"], "bert-99.9") == ["bert-99.9", "bert-99"]
    assert prefer_variant(["bert-99.9", "bert-99"], "bert-99") == ["bert-99", "bert-99.9"]
    assert prefer_variant(["resnet50"], "resnet50-99") == ["resnet50"]


def test_find_run_logs_reads_the_submission_layout_and_picks_the_variant():
    high = find_run_logs(H200.parent, "bert", "Offline", "bert-99.9")
    low = find_run_logs(H200.parent, "bert", "Offline", "bert-99")
    assert high[0].directory == H200 / "bert-99.9" / "Offline" / "performance" / "run_1"
    assert low[0].directory == H200 / "bert-99" / "Offline" / "performance" / "run_1"
    assert {r.benchmark_dir for r in high} == {"bert-99", "bert-99.9"}
    assert high[0].system_id == H200.name


def test_published_lookup_uses_the_case_variant():
    pub = PublishedBaselines(H200)
    assert pub.system == H200.name
    high = pub.lookup(entry("bert", "Offline", "Samples per second", 1.0, fraction=0.999))
    low = pub.lookup(entry("bert", "Offline", "Samples per second", 1.0, fraction=0.99))
    # By hand from results/.../bert-99.9|bert-99/Offline/performance/run_1/mlperf_log_summary.txt and accuracy.txt
    assert (high.benchmark, high.value, high.accuracy) == ("bert-99.9", 63950.4, 90.97056894987658)
    assert (low.benchmark, low.value, low.accuracy) == ("bert-99", 73309.5, 90.35676151551918)
    server = pub.lookup(entry("bert", "Server", "Completed samples per second", 1.0, fraction=0.999))
    assert (server.metric, server.value) == ("Completed samples per second", 51212.02)
    llm = pub.lookup(entry("llama2-70b", "Server", "Completed tokens per second", 1.0))
    assert (llm.benchmark, llm.metric, llm.value) == ("llama2-70b-99", "Completed tokens per second", 29228.22)
    assert pub.lookup(entry("rnnt", "Offline", "Samples per second", 1.0)) is None


def test_compare_against_a_published_system_folder():
    base = Baselines(CompareSpec("path", path=H200), [], "now")
    (c,) = base.compare(entry("bert", "Offline", "Samples per second", 60000.0, fraction=0.999),
                        {"throughput": 5.0})
    assert (c.baseline, c.regressed) == (63950.4, True)
    assert c.change_pct == pytest.approx((60000.0 - 63950.4) / 63950.4 * 100)
    (ok,) = base.compare(entry("bert", "Offline", "Samples per second", 73000.0, fraction=0.99),
                         {"throughput": 5.0})
    assert (ok.baseline, ok.regressed) == (73309.5, False)
    acc = base.compare(entry("bert", "Offline", "Samples per second", 73000.0, accuracy=89.0), {"accuracy": 0.5})
    assert [(c.kind, c.baseline, c.regressed) for c in acc] == [
        ("throughput", 73309.5, False), ("accuracy", 90.35676151551918, True)]


def test_v11_server_headline_baselines_todays_name():
    """v1.1 Server says 'Scheduled samples per second'; LoadGen 6 says 'Completed samples per second'."""
    base = Baselines(CompareSpec("path", path=V11_MIG), [], "now")
    (c,) = base.compare(entry("bert", "Server", "Completed samples per second", 380.0), {})
    assert (c.metric, c.baseline) == ("Completed samples per second", BERT_V11_SERVER)


def test_folder_of_several_systems_is_refused_with_their_names(tmp_path: Path):
    """A results/ folder with two systems (real summaries copied into a second system folder)."""
    import shutil
    shutil.copytree(H200, tmp_path / "results" / H200.name)
    shutil.copytree(V11_MIG, tmp_path / "results" / V11_MIG.name)
    with pytest.raises(ConfigError, match=r"holds published results of 2 systems .*point it at one system "
                                          r"folder, e.g. --mig-compare=.*results/DGX-A100"):
        Baselines(CompareSpec("path", path=tmp_path), [], "now")
    assert PublishedBaselines(tmp_path / "results" / H200.name).system == H200.name


def test_mig_compare_points_at_a_published_system_folder(mini_project):
    """Whole session: --mig-compare=<published results/<system>>; the gate fails against it."""
    from test_report_e2e import RESNET, report_project, run
    r = run(report_project(mini_project), f"--mig-compare={H200}", "--mig-compare-fail=throughput:5%", "-k", "resnet50")
    r.assert_outcomes(failed=1)
    # 756960 = 'Samples per second: 756960' of H200's resnet50 Offline; 1983.38 is what the program copies.
    r.stdout.fnmatch_lines([f"*{RESNET}*Completed samples per second*756960*1983.38*-99.7%*REGRESSED*"])
