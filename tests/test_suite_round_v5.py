"""The v5.x round: its catalogue, suites selecting it, memory-fit planning, NVIDIA's names."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import HarnessError, SuiteError
from pytest_mig.gpu.planner import fits_memory, memory_gib, smallest_fitting
from pytest_mig.gpu.profiles import get_model
from pytest_mig.harness.nvidia import config_ver, nvidia_benchmark
from pytest_mig.plan.suite import known_rounds, load_catalog, load_suite
from pytest_mig.types import WorkSpec

REPO = Path(__file__).resolve().parent.parent
V5_SUITE = REPO / "suites" / "datacenter-v5" / "suite.yaml"
H200 = get_model("H200-141GB")
A100 = get_model("A100-SXM4-80GB")


@pytest.fixture(scope="module")
def v5():
    return load_catalog(round_name="v5.1")


def test_rounds_and_benchmark_names(v5):
    assert {"v1.1", "v5.1"} <= set(known_rounds())
    assert v5.round == "v5.1" and load_catalog().round == "v1.1"
    assert set(v5.benchmarks) == {
        "resnet50", "retinanet", "bert", "dlrm-v2", "3d-unet", "gptj", "llama2-70b", "llama3.1-8b",
        "llama3.1-8b-edge", "llama3.1-405b", "mixtral-8x7b", "stable-diffusion-xl", "whisper",
        "deepseek-r1"}
    assert v5.benchmarks["gptj"].rounds == ("v5.0",)
    assert v5.benchmarks["whisper"].rounds == ("v5.1",)


@pytest.mark.parametrize("name, datacenter, edge", [
    ("retinanet", ("Offline", "Server"), ("Offline", "SingleStream", "MultiStream")),
    ("resnet50", ("Offline", "Server"), ("Offline", "SingleStream", "MultiStream")),
    ("bert", None, ("Offline", "SingleStream")),
    ("3d-unet", ("Offline",), ("Offline", "SingleStream")),
    ("llama3.1-8b", ("Offline", "Server"), None),
    ("llama3.1-8b-edge", None, ("Offline", "SingleStream")),
    ("whisper", ("Offline",), ("Offline",)),
    ("deepseek-r1", ("Offline", "Server"), None),
    ("dlrm-v2", ("Offline", "Server"), None),
])
def test_scenarios_per_class(v5, name, datacenter, edge):
    scenarios = v5.benchmarks[name].scenarios
    assert scenarios.get("datacenter") == datacenter
    assert scenarios.get("edge") == edge


@pytest.mark.parametrize("name, metric, reference, fractions", [
    ("retinanet", "mAP", 37.55, (0.99,)),
    ("3d-unet", "mean", 86.17, (0.99, 0.999)),
    ("dlrm-v2", "AUC", 80.31, (0.99, 0.999)),
    ("gptj", "rouge1", 42.9865, (0.99, 0.999)),
    ("llama2-70b", "rouge1", 44.4312, (0.99, 0.999)),
    ("llama3.1-8b", "rouge1", 38.7792, (0.99,)),
    ("llama3.1-405b", "rougeL", 21.6666, (0.99,)),
    ("mixtral-8x7b", "rouge1", 45.5989, (0.99,)),
    ("stable-diffusion-xl", "CLIP_SCORE", 31.68631873, (1.0,)),
    ("whisper", "accuracy", 97.9329, (0.99,)),
    ("deepseek-r1", "exact_match", 81.3582, (0.99,)),
])
def test_accuracy_targets(v5, name, metric, reference, fractions):
    info = v5.benchmarks[name]
    assert (info.metric, info.reference, info.fractions) == (metric, reference, fractions)


def test_other_targets_and_token_latency_bounds(v5):
    llama = v5.benchmarks["llama3.1-8b"]
    assert llama.others["rougeL"] == 24.4957 and llama.others["gen_len"] == 8167644
    assert llama.latency == {"ttft_ms": 2000, "tpot_ms": 100, "interactive_ttft_ms": 500,
                             "interactive_tpot_ms": 30}
    assert v5.benchmarks["llama3.1-405b"].latency["ttft_ms"] == 6000
    assert v5.benchmarks["deepseek-r1"].latency["tpot_ms"] == 80
    assert v5.benchmarks["retinanet"].latency == {"server_ms": 100, "multistream_ms": 528}


def test_planner_picks_the_smallest_profile_with_the_memory():
    assert memory_gib(H200, "1g.18gb") == 16.0
    assert fits_memory(H200, "1g.18gb", 11) and not fits_memory(H200, "1g.18gb", 16.5)
    assert smallest_fitting(H200, ["2g.35gb", "1g.18gb"], 11) == "1g.18gb"
    assert smallest_fitting(H200, ["1g.18gb", "1g.35gb", "2g.35gb"], 20) == "1g.35gb"
    assert smallest_fitting(H200, ["1g.18gb", "3g.71gb"], 47) == "3g.71gb"
    assert smallest_fitting(A100, ["1g.10gb", "1g.20gb"], 11) == "1g.20gb"
    assert smallest_fitting(H200, ["1g.18gb", "7g.141gb"], 390) is None


def test_v5_suite_selects_its_round_and_sizes_slices_by_memory():
    suite = load_suite(V5_SUITE)
    assert suite.catalog.round == "v5.1" and suite.suite_class == "datacenter"
    on_a100 = {(c.benchmark, c.profile) for c in suite.expand("A100-SXM4-80GB")}
    assert on_a100 == {("retinanet", "1g.10gb"), ("3d-unet", "1g.10gb"), ("llama3.1-8b", "1g.20gb")}
    on_h200 = suite.expand("H200-141GB")
    assert {c.profile for c in on_h200} == {"1g.18gb"} and not any(c.skip_reason for c in on_h200)
    on_a30 = {(c.benchmark, c.profile) for c in suite.expand("A30-24GB")}
    assert ("llama3.1-8b", "4g.24gb") in on_a30
    llama = next(c for c in on_h200 if c.benchmark == "llama3.1-8b")
    assert (llama.accuracy_metric, llama.accuracy_reference) == ("rouge1", 38.7792)
    assert set(llama.background) == {"3d-unet", "bert", "resnet50", "retinanet"}


def test_benchmark_larger_than_every_listed_profile_is_a_skip_with_the_numbers(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("suite: big\nclass: datacenter\nround: v5.1\n"
                    "benchmarks: {llama3.1-405b: {scenarios: [Offline]}, retinanet: }\n"
                    "gpus: {H200-141GB: {profiles: [1g.18gb, 7g.141gb], slots: 7}}\n"
                    "run_profiles: {smoke: {min_duration_ms: 1, min_query_count: 1}}\n")
    cases = load_suite(path).expand("H200-141GB")
    big = [c for c in cases if c.benchmark == "llama3.1-405b"]
    assert {c.profile for c in big} == {"7g.141gb"}
    assert "needs 390 GiB" in big[0].skip_reason and "7g.141gb, has 140.00 GiB" in big[0].skip_reason
    assert all(c.skip_reason is None and c.profile == "1g.18gb" for c in cases if c.benchmark == "retinanet")


def test_unknown_round_and_mismatched_catalogue_are_one_line_errors(tmp_path, v5):
    path = tmp_path / "suite.yaml"
    path.write_text("suite: x\nclass: datacenter\nround: v5.2\nbenchmarks: {retinanet: }\n"
                    "gpus: {H200-141GB: {profiles: [1g.18gb], slots: 7}}\n"
                    "run_profiles: {smoke: {min_duration_ms: 1, min_query_count: 1}}\n")
    with pytest.raises(SuiteError, match=r"unknown MLPerf round 'v5.2'.*did you mean 'v5.1'"):
        load_suite(path)
    with pytest.raises(SuiteError, match="suite is of round v5.1 but the catalogue"):
        load_suite(V5_SUITE, load_catalog())
    assert load_suite(V5_SUITE, v5).catalog is v5


def work(benchmark: str) -> WorkSpec:
    return WorkSpec(role="main", name="main", benchmark=benchmark, scenario="Offline",
                    mode="performance", min_duration_ms=1, min_query_count=1, log_dir=Path("x"))


def test_nvidia_names_and_config_ver_per_round():
    assert nvidia_benchmark("llama3.1-8b") == "llama3.1-8b"
    assert nvidia_benchmark("llama3.1-8b-edge") == "llama3.1-8b"
    assert nvidia_benchmark("dlrm-v2-99.9") == "dlrm-v2"
    assert nvidia_benchmark("stable-diffusion-xl") == "stable-diffusion-xl"
    assert config_ver(work("retinanet"), {}) == "default"
    assert config_ver(work("dlrm-v2-99.9"), {}) == "high_accuracy"
    assert config_ver(work("llama2-70b-99"), {}) == "default"
    assert config_ver(work("dlrm"), {}) == "hetero_high_accuracy"  # v1.1 unchanged
    assert config_ver(work("3d-unet"), {"config_ver": "default"}) == "default"
    with pytest.raises(HarnessError, match="did you mean 'llama2-70b'"):
        nvidia_benchmark("llama2-70")
