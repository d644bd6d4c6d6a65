"""Every round's quirks (issue 27, classes A-H), each on a real published file of the corpus.

Expected values were copied by hand from the raw files under tests/data/mlperf_corpus (their
SOURCE names repository, commit and original path)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_mig.report.published import PublishedBaselines, metric_kind
from pytest_mig.results import AccuracyWarning, parse_accuracy, parse_audit, parse_summary
from pytest_mig.results.folders import submission_runs
from pytest_mig.results.summary import token_throughput

C = Path(__file__).parent / "data" / "mlperf_corpus"
V60 = C / "v6.0"
SUMMARY = "mlperf_log_summary.txt"


# A. v6.0 (and v5.1 pointpainting) accuracy files, read by their benchmark's format.
@pytest.mark.parametrize("path, benchmark, metric, value", [
    ("AMD/closed/results/8xMI355X_2xEPYC_9575F/gpt-oss-120b/Offline/accuracy/accuracy.txt", "gpt-oss-120b",
     "exact_match", 83.396),  # "Printing for submission_checker: 'exact_match': 83.396"
    ("GigaComputing/closed/results/DLB2-CB3_GB300-288GB_aarch64x4_TRT/qwen3-vl-235b-a22b/Offline/accuracy/"
     "accuracy.txt", "qwen3-vl-235b-a22b", "f1", 78.86741346065558),  # {"f1": 0.7886741346065558}
    ("Cisco/closed/results/C880A_M8_B300_288GBx8_TRT/wan-2.2-t2v-a14b/Offline/accuracy/accuracy.txt",
     "wan-2.2-t2v-a14b", "vbench_score", 70.1617),
    ("Dell/closed/results/Dell_Pro_Max_GB10x1/yolo-95/multistream/accuracy/accuracy.txt", "yolo-95", "mAP", 53.108),
    ("Google/closed/results/B200-SXM-180GBx8_TRT/dlrm-v3/Server/accuracy/accuracy.txt", "dlrm-v3", "AUC",
     78.62891760730971),  # metric/lifetime_gauc/rating: 0.7862891760730971
])
def test_v6_accuracy_formats(path, benchmark, metric, value):
    got = parse_accuracy(V60 / path, benchmark)
    assert (got.metric, got.value, got.warning) == (metric, value, "")


def test_dlrm_v3_reads_ne_and_accuracy_beside_the_auc():
    got = parse_accuracy(V60 / "Google/closed/results/B200-SXM-180GBx8_TRT/dlrm-v3/Server/accuracy/accuracy.txt",
                         "dlrm-v3")
    assert got.fields == {"AUC": 78.62891760730971, "NE": 86.75496448947934, "accuracy": 69.64279594720938,
                          "samples": 349823.0}


def test_pointpainting_total_is_its_map():
    got = parse_accuracy(C / "v5.1/GATEOverflow/open/results/GATEOverflow_Intel_SPR_i9-reference-gpu-pytorch_v2.2.2-"
                         "cu126/pointpainting/singlestream/accuracy/accuracy.txt", "pointpainting")
    assert (got.metric, got.value) == ("mAP", 54.256218124416954)


@pytest.mark.parametrize("path, benchmark, metric, value", [
    (C / "v6.0/Krai/open/results/h200_n1-vllm/llama3_1-70b-fp8_dyn/offline/accuracy/accuracy.txt",
     "llama3_1-70b-fp8_dyn", "rouge1", 47.6127),
    (C / "v5.1/GATEOverflow/open/results/596a81fc0ea1-ctuning_cpp_tflite-cpu-tflite_vmaster-default_config/"
     "efficientnet-fp32-lite0/offline/accuracy/accuracy.txt", "efficientnet-fp32-lite0", "accuracy", 75.068),
])
def test_open_division_names_are_read_by_metric_name_with_a_warning(path, benchmark, metric, value):
    with pytest.warns(AccuracyWarning, match=f"'{benchmark}' has no known accuracy format"):
        got = parse_accuracy(path, benchmark)
    assert (got.metric, got.value) == (metric, value) and f"read '{metric}'" in got.warning


# B. v6.0 KiTS19: 'Accuracy: mean = 0.90862, threshold = 0.90679 (Passed)' then per-class lines.
def test_v6_kits19_verdict_line_and_per_class_lines():
    got = parse_accuracy(V60 / "Lenovo/closed/results/SE455I_V3_TRT/3d-unet-99.9/Offline/accuracy/accuracy.txt",
                         "3d-unet-99.9")
    assert (got.metric, got.value) == ("mean", 90.862)
    assert got.fields == {"mean": 90.862, "threshold": 90.679, "passed": 1.0, "kidney": 94.862, "tumor": 86.862}


# C. TEST07, TEST08, TEST09 verdicts.
AMD = V60 / "AMD/closed/results/8xMI355X_2xEPYC_9575F"


def test_test09_output_length_verdict():
    v = parse_audit(AMD / "gpt-oss-120b/Offline/TEST09/verify_output_len.txt")
    assert (v.test, v.kind, v.passed, v.checks) == ("TEST09", "performance", True, {"Min": "True", "Max": "True"})
    assert (v.details["Mean output tokens"], v.details["Min threshold"], v.details["Max threshold"],
            v.details["Total samples"]) == (1373.90, 1150.38, 1406.02, 6396)


def test_test07_accuracy_verdict():
    v = parse_audit(AMD / "gpt-oss-120b/Offline/TEST07/verify_accuracy.txt")
    assert (v.test, v.kind, v.passed, v.checks) == ("TEST07", "accuracy", True, {"Accuracy": "True"})
    assert (v.details["Accuracy score"], v.details["Accuracy threshold"]) == (63.737, 60.698)


def test_test08_dlrm_v3_verdict():
    v = parse_audit(V60 / "NVIDIA/closed/results/B200-SXM-180GBx8_TRT/dlrm-v3/Offline/TEST08/verify_accuracy.txt")
    assert (v.test, v.kind, v.passed) == ("TEST08", "accuracy", True)
    assert (v.details["num_matched"], v.details["num_unmatched"], v.details["num_perf_log_entries"]) == (4027, 0, 4027)


# D. LoadGen 4.0 LLM Server: the token rate only under Additional Stats.
HABANA = C / "v4.0/Intel-HabanaLabs/closed/results/HLS-Gaudi2-PT"


def test_loadgen_4_0_llm_server_headline_is_the_token_rate():
    s = parse_summary(HABANA / "llama2-70b-99.9/Server/performance/run_1" / SUMMARY)
    assert s.metrics == {"Completed samples per second": 21.60}
    assert (s.headline_name, s.headline_value) == ("Completed tokens per second", 6287.47)
    assert token_throughput(s) == ("Completed tokens per second", 6287.47)
    assert metric_kind("Completed tokens per second") == "token throughput" != metric_kind("Samples per second")


def test_a_samples_rate_never_baselines_a_token_rate():
    pub = PublishedBaselines(HABANA)
    tokens = pub.lookup(_entry("llama2-70b", "Server", "Completed tokens per second", 0.999))
    assert (tokens.metric, tokens.value) == ("Completed tokens per second", 6287.47)  # not 21.60 samples/s
    samples = pub.lookup(_entry("llama2-70b", "Server", "Completed samples per second", 0.999))
    assert samples.metric == "Completed tokens per second"  # kept: no samples/s case compares with it


# E. A summary right under performance/ (no run_N): the real v4.0 summary placed as such.
def test_summary_directly_under_performance_is_found(tmp_path: Path):
    system = tmp_path / "results" / "HLS-Gaudi2-PT"
    perf = system / "llama2-70b-99.9" / "Server" / "performance"
    perf.mkdir(parents=True)
    shutil.copy(HABANA / "llama2-70b-99.9/Server/performance/run_1" / SUMMARY, perf / SUMMARY)
    (run,) = submission_runs(system)
    assert (run.system, run.benchmark_dir, run.scenario, run.performance) == (
        "HLS-Gaudi2-PT", "llama2-70b-99.9", "Server", perf)
    assert PublishedBaselines(system).lookup(
        _entry("llama2-70b", "Server", "Completed tokens per second", 0.999)).value == 6287.47


# F. v5.0 keeps Interactive as llama2-70b-interactive-99 folders holding a Server scenario.
V50_H200 = C / "v5.0/NVIDIA/closed/results/H200-SXM-141GBx8_TRT"


def test_v5_0_interactive_folders():
    runs = {(r.benchmark_dir, r.effective_scenario) for r in submission_runs(V50_H200)}
    assert ("llama2-70b-interactive-99", "Interactive") in runs
    pub = PublishedBaselines(V50_H200)
    interactive = pub.lookup(_entry("llama2-70b", "Interactive", "Completed tokens per second", 0.99))
    assert (interactive.benchmark, interactive.accuracy) == ("llama2-70b-interactive-99", 44.5031)
    assert pub.lookup(_entry("llama2-70b", "Server", "Completed tokens per second", 0.99)) is None
    offline = pub.lookup(_entry("llama2-70b", "Offline", "Tokens per second", 0.99))
    assert (offline.benchmark, offline.value) == ("llama2-70b-99", 34988.2)


# G. A results/<system> root finds the verdicts of compliance/<system> beside it.
def test_system_folder_finds_its_sibling_compliance_verdicts():
    nvidia = C / "v4.1/NVIDIA/closed"
    system = nvidia / "results" / "H200-SXM-141GBx8_TRT"
    for root in (system, nvidia / "results", nvidia):
        bert = next(r for r in submission_runs(root) if (r.benchmark_dir, r.scenario) == ("bert-99.9", "Offline"))
        assert bert.compliance == {
            "TEST01": nvidia / "compliance/H200-SXM-141GBx8_TRT/bert-99.9/Offline/TEST01",
            "TEST05": nvidia / "compliance/H200-SXM-141GBx8_TRT/bert-99.9/Offline/TEST05"}, root


# H. An empty TTFT early-stopping block says nothing in the INVALID reasons.
def test_invalid_reasons_skip_an_empty_token_block():
    s = parse_summary(C / "v5.1/Krai/open/compliance/xe9680_h100_x8_vllm_092/llama3_1-70b-fp8_dyn/server/TEST06/"
                      "performance/run_1" / SUMMARY)
    assert s.token_early_stopping["TTFT"] == []
    assert s.invalid_reasons == [
        "Early stopping not satisfied (TPOT: Run unsuccessful. Processed 100 queries. Would need to run at least "
        "359 more queries, with the run being successful if every additional query were under latency.)"]


def _entry(benchmark: str, scenario: str, metric: str, fraction: float | None):
    from pytest_mig.report.history import HistoryEntry
    return HistoryEntry(case=f"{benchmark}-{scenario}", run_id="now", timestamp="", outcome="passed",
                        gpu_model="H200-141GB", backend="nvml", benchmark=benchmark, scenario=scenario,
                        metric=metric, value=1.0, accuracy_fraction=fraction)


def test_find_run_logs_keeps_v5_0_interactive_apart_and_reads_performance_alone(tmp_path: Path):
    from pytest_mig.harness.nvidia_logs import find_run_logs
    assert {r.benchmark_dir for r in find_run_logs(V50_H200, "llama2-70b", "Interactive")} == {
        "llama2-70b-interactive-99"}
    assert find_run_logs(V50_H200, "llama2-70b", "Server") == []
    perf = tmp_path / "HLS-Gaudi2-PT" / "llama2-70b-99.9" / "Server" / "performance"
    perf.mkdir(parents=True)
    shutil.copy(HABANA / "llama2-70b-99.9/Server/performance/run_1" / SUMMARY, perf / SUMMARY)
    (found,) = find_run_logs(tmp_path, "llama2-70b", "Server")
    assert (found.directory, found.system_id) == (perf, "HLS-Gaudi2-PT")
