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
from pytest_mig.results.folders import prefer_variant, submission_runs, variant_name

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


# v6.0: a closed and an open system folder as published (corpus: AMD's whole 8xMI355X_2xEPYC_9575F
# submission, Krai's open h200_n1-vllm); numbers copied by hand from their files.
V60 = DATA / "mlperf_corpus" / "v6.0"
AMD_V60 = V60 / "AMD" / "closed" / "results" / "8xMI355X_2xEPYC_9575F"
KRAI_V60 = V60 / "Krai" / "open" / "results" / "h200_n1-vllm"


def test_v6_closed_system_llm_token_rates_interactive_and_accuracy():
    pub = PublishedBaselines(AMD_V60)
    gpt = pub.lookup(entry("gpt-oss-120b", "Server", "Completed tokens per second", 1.0))
    assert (gpt.benchmark, gpt.metric, gpt.value) == ("gpt-oss-120b", "Completed tokens per second", 82136.08)
    assert (gpt.accuracy_metric, gpt.accuracy) == ("exact_match", 83.813)
    server = pub.lookup(entry("llama2-70b", "Server", "Completed tokens per second", 1.0, fraction=0.999))
    interactive = pub.lookup(entry("llama2-70b", "Interactive", "Completed tokens per second", 1.0, fraction=0.999))
    assert (server.scenario, server.value) == ("Server", 100282.36)
    assert (interactive.benchmark, interactive.scenario, interactive.value, interactive.accuracy) == (
        "llama2-70b-99.9", "Interactive", 73608.25, 44.5411)
    # A samples/s case is never baselined by a token rate.
    assert pub.lookup(entry("gpt-oss-120b", "Server", "Completed samples per second", 1.0)).metric == \
        "Completed tokens per second"


def test_v6_compliance_verdicts_inside_results_and_beside_them():
    pub = PublishedBaselines(AMD_V60)
    gpt = pub.verdicts("gpt-oss-120b", "Offline", None)
    assert sorted(gpt) == ["TEST07", "TEST09"]
    assert (gpt["TEST07"].passed, gpt["TEST07"].details["Accuracy score"]) == (True, 63.737)
    assert (gpt["TEST09"].kind, gpt["TEST09"].details["Mean output tokens"]) == ("performance", 1373.90)
    assert set(pub.verdicts("llama2-70b", "Interactive", 0.999)) == {"TEST06"}
    # v4.1: compliance/<system> beside results/<system>, found from the system folder itself.
    bert = PublishedBaselines(H200).verdicts("bert", "Offline", 0.999)
    assert sorted(bert) == ["TEST01 accuracy", "TEST01 performance", "TEST05"]
    assert all(v.passed for v in bert.values())


def test_v6_open_division_system_is_read_by_metric_name():
    from pytest_mig.results import AccuracyWarning
    pub = PublishedBaselines(KRAI_V60)
    with pytest.warns(AccuracyWarning, match="llama3_1-70b-fp8_dyn"):
        base = pub.lookup(entry("llama3_1-70b-fp8_dyn", "Server", "Completed tokens per second", 1.0, fraction=None))
        offline = pub.lookup(entry("llama3_1-70b-fp8_dyn", "Offline", "Tokens per second", 1.0, fraction=None))
    assert (base.metric, base.value, base.accuracy_metric, base.accuracy) == (
        "Completed tokens per second", 24821.6, "rouge1", 47.6215)
    assert (offline.metric, offline.value, offline.accuracy) == ("Tokens per second", 25939.8, 47.6127)


def test_compare_against_a_v6_system_folder_gates_token_rates():
    base = Baselines(CompareSpec("path", path=AMD_V60), [], "now")
    (c,) = base.compare(entry("gpt-oss-120b", "Server", "Completed tokens per second", 70000.0, fraction=1.0),
                        {"throughput": 5.0})
    assert (c.metric, c.baseline, c.regressed) == ("Completed tokens per second", 82136.08, True)


def test_mig_compare_points_at_a_v6_system_folder(mini_project):
    """Whole session: --mig-compare=<v6.0 closed results/<system>> (compliance TESTs inside it)."""
    from test_report_e2e import RESNET, report_project, run
    lenovo = V60 / "Lenovo" / "closed" / "results" / "SE455I_V3_TRT"
    r = run(report_project(mini_project), f"--mig-compare={lenovo}", "--mig-compare-fail=throughput:5%",
            "-k", "resnet50")
    r.assert_outcomes(failed=1)
    # 25200.5 = 'Samples per second: 25200.5' of its resnet50 Offline run; 1983.38 is what the program copies.
    r.stdout.fnmatch_lines([f"*{RESNET}*Completed samples per second*25200.5*1983.38*-92.1%*REGRESSED*"])
