"""Hand-written checks of the corpus files that broke the parsers; every value copied from the raw file."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import ResultParseError
from pytest_mig.results import parse_accuracy, parse_audit, parse_detail, parse_summary

C = Path(__file__).parent / "data" / "mlperf_corpus"
SUMMARY = "mlperf_log_summary.txt"


def test_loadgen_1_0_multistream_keeps_intervals_per_query_and_per_sample_apart():
    s = parse_summary(C / "v0.5/Habana/open/results/Goya_fast_latency/resnet/MultiStream/performance/run_1" / SUMMARY)
    assert (s.sut_name, s.scenario, s.headline_name, s.headline_value) == (
        "HABANA_Runner", "MultiStream", "Samples per query", 20)  # 'HABANA_Runner\x00', 'Multi Stream'
    assert s.issue_intervals == {"qps": 500, "ms": 2, "p50": 1, "p90": 1, "p95": 1, "p97": 1, "p99": 1, "p99.9": 1}
    assert s.additional == {"per-query target_ns": 2000000, "per-query target_ms": 2}
    assert s.latencies_ns["p99"] == 1847727 and "min" not in s.latencies_ns  # per-query block
    assert (s.sample_latencies_ns["min"], s.sample_latencies_ns["max"], s.sample_latencies_ns["mean"]) == (
        1614182, 2401567, 1794586)


def test_llm_server_summary_scores_completed_tokens():
    s = parse_summary(C / "v4.1/AMD/closed/results/1xMI300X_2xEPYC-9374F/llama2-70b-99.9/Server/performance/run_1"
                      / SUMMARY)
    assert (s.headline_name, s.headline_value) == ("Completed tokens per second", 2520.27)
    assert s.metrics == {"Completed samples per second": 8.59, "Completed tokens per second": 2520.27}
    assert s.token_early_stopping == {"TTFT": ["Run successful."], "TPOT": ["Run successful."]}
    assert (s.ttft_ns["p99"], s.ttft_ns["min"], s.tpot_ns["p99"], s.tpot_ns["max"]) == (
        785265884, 41848066, 190298723, 276382332)
    assert s.latencies_ns["p99"] == 147719118046
    assert s.additional["Scheduled samples per second"] == 8.62


def test_llm_offline_inferred_tokens_are_the_headline():
    s = parse_summary(C / "v4.1/ASUSTeK/closed/results/ESC4000A_E12_4XH100_TRT/gptj-99.9/Offline/performance/run_1"
                      / SUMMARY)
    assert (s.headline_name, s.headline_value) == ("Tokens per second (inferred)", 6985.51)
    assert s.metrics["Samples per second"] == 101.239


def test_llm_invalid_run_explains_the_ttft_early_stopping():
    s = parse_summary(C / "v5.1/Lenovo/closed/results/SR680a_V3_B200SXMx8_TRT/llama2-70b-99.9/Server/performance/"
                      "ranging" / SUMMARY)
    assert not s.valid and s.headline_value == 99204.76
    assert s.token_early_stopping["TTFT"][:2] == ["Run unsuccessful.", "Processed 884736 queries."]
    assert s.recommendations == ["TTFT constrain not met: Reduce target QPS to improve latency."]
    assert any("TTFT: Run unsuccessful." in r for r in s.invalid_reasons)


def test_llm_edge_singlestream_token_estimates():
    s = parse_summary(C / "v5.1/Intel/closed/compliance/1-node-1x-BMG-Pro-B60-Dual/llama3.1-8b-edge/SingleStream/"
                      "performance/run_1" / SUMMARY)
    assert (s.headline_name, s.headline_value) == ("90.0th percentile latency (ns)", 3573157070)
    assert s.metrics["90.0th first token percentile latency (ns)"] == 248504645
    assert s.early_stopping_estimates == {"TTFT 90.0th percentile": 313185436, "TPOT 90.0th percentile": 26547362}
    assert s.additional["TPS w/ loadgen overhead"] == 37.09


def test_loadgen_5_parameter_warning_is_kept():
    s = parse_summary(C / "v5.1/AMD/closed/results/8xMI300X_2xEPYC_9575F/llama2-70b-99.9/Interactive/performance/"
                      "run_1" / SUMMARY)
    assert s.scenario == "Server" and s.test_parameters["ttft_latency (ns)"] == "450000000"
    assert s.parameter_warnings[0].startswith("sample_concatenate_permutation was set to true. Generated samples")


def test_truncated_published_summary_is_refused():
    with pytest.raises(ResultParseError, match="warnings encountered' line at the end"):
        parse_summary(C / "v0.5/Intel/closed/audit/ICL-I3-1005G1_OpenVINO-Windows/mobilenet/Offline/TEST05/"
                      "performance/run_1" / SUMMARY)


def test_detail_logs_with_nul_and_pre_1_0_text():
    d = parse_detail(C / "v1.1/Dell/closed/compliance/R750_Intel6330_openvino/ssd-resnet34/offline/TEST04-A/"
                     "performance/run_1/mlperf_log_detail.txt")
    assert (d.sut_name, d.result_validity, d.malformed) == ("SUT", "INVALID", [])  # raw: "SUT\x00"
    old = parse_detail(C / "v0.5/Alibaba/closed/audit/alibaba_HanGuang/resnet/Server/TEST03/performance/run_1/"
                       "mlperf_log_detail.txt")
    assert (old.format, old.loadgen_version, old.scenario, old.mode) == (
        "text", ".5a1 @ 168255031d", "Server", "Performance")
    assert old.warnings[0].value.startswith("Logging allocation detected") and old.result_validity == ""


@pytest.mark.parametrize("path, benchmark, metric, value", [
    ("v0.7/Intel/closed/compliance/1-node-8s-cpx-pt-bf16/dlrm-99.9/Offline/TEST01/accuracy", "dlrm-99.9",
     "AUC", 80.26857048609648),  # AUC=80.26857048609648
    ("v1.1/Intel/open/results/1-node-2S-ICX-PyTorch-INT8/dlrm-99/server/accuracy", "dlrm-99",
     "AUC", 79.91411393299856),  # AUC = 79.91411393299856
    ("v0.7/Intel/closed/compliance/1-node-8s-cpx-mx-int8/resnet/Server/TEST01/accuracy", "resnet",
     "accuracy", 76.092),  # ...total=50000hash=7b08...
    ("v2.0/Deci/open/results/aws-c6i.16xlarge-openvino/bert-99/Offline/accuracy", "bert-99",
     "f1", 89.90716435557265),  # {'exact_match': ..., 'f1': ...}
    ("v2.0/ASUSTeK/closed/results/A100-PCIe-80GBx8_TRT/3d-unet-99.9/Offline/accuracy", "3d-unet-99.9",
     "mean", 86.348),  # Accuracy: mean = 0.86348, kidney = 0.9342, tumor = 0.7927
    ("v4.1/Google/closed/results/tpu_v6_x4_flax/stable-diffusion-xl/server/accuracy", "stable-diffusion-xl",
     "CLIP_SCORE", 31.736226662099362),  # a dict spread over lines
    ("v5.1/CoreWeave/closed/results/GB300-NVL8-CoreWeave_TRT/deepseek-r1/Offline/accuracy", "deepseek-r1",
     "exact_match", 81.40382862351869),
])
def test_other_harnesses_accuracy_lines(path, benchmark, metric, value):
    got = parse_accuracy(C / path / "accuracy.txt", benchmark)
    assert (got.metric, got.value) == (metric, value)


def test_audit_verdicts_of_later_rounds():
    t06 = parse_audit(C / "v4.1/AMD/closed/compliance/1xMI300X_2xEPYC-9374F/llama2-70b-99.9/Offline/TEST06/"
                      "verify_accuracy.txt")
    assert (t06.test, t06.passed, t06.checks) == (
        "TEST06", True, {"First token": "Skipped", "EOS": "True", "Sample length": "True"})
    v5 = parse_audit(C / "v5.1/AMD/closed/compliance/8xMI325x_2xEPYC-9655/stable-diffusion-xl/Offline/TEST01/"
                     "verify_performance.txt")
    assert (v5.passed, v5.reference_score, v5.test_score) == (True, 18.5856, 17.3997)  # 'Reference score = '
    fail = parse_audit(C / "v0.5/dividiti/open/audit/firefly-tflite-v1.15/mobilenet-v1-0.5-160-quantized/"
                       "singlestream/TEST04-A/verify_performance.txt")
    assert (fail.test, fail.passed, fail.reference_score, fail.test_score) == ("TEST04", False, 9472160, 8413703)
