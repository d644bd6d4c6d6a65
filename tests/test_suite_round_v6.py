"""The v6.0 round: its catalogue (every benchmark of the submission checker's v6.0 list), the
datacenter-v6 suite, memory-fit planning of the new LLMs, NVIDIA's v6.0 names.

Expected values are the checker's MODEL_CONFIG["v6.0"] and v6.0's published mlperf.conf,
copied by hand (see the catalogue's `source`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.gpu.planner import smallest_fitting
from pytest_mig.gpu.profiles import get_model
from pytest_mig.harness.nvidia import config_ver, nvidia_benchmark
from pytest_mig.plan.suite import known_rounds, load_catalog, load_suite
from pytest_mig.types import WorkSpec

REPO = Path(__file__).resolve().parent.parent
V6_SUITE = REPO / "suites" / "datacenter-v6" / "suite.yaml"
H200 = get_model("H200-141GB")
H100 = get_model("H100-SXM5-80GB")
# The checker's v6.0 model list, its names mapped to the catalogue's (resnet -> resnet50,
# bert-99/-99.9 -> bert, 3d-unet-99/-99.9 -> 3d-unet, llama2-70b-99/-99.9 -> llama2-70b).
CHECKER_V6 = {"resnet50", "retinanet", "bert", "3d-unet", "llama3.1-8b", "llama3.1-8b-edge", "llama2-70b",
              "stable-diffusion-xl", "mixtral-8x7b", "llama3.1-405b", "rgat", "pointpainting", "deepseek-r1",
              "whisper", "gpt-oss-120b", "wan-2.2-t2v-a14b", "qwen3-vl-235b-a22b", "dlrm-v3", "yolo-95", "yolo-99"}


@pytest.fixture(scope="module")
def v6():
    return load_catalog(round_name="v6.0")


def test_round_and_every_checker_benchmark(v6):
    assert "v6.0" in known_rounds() and v6.round == "v6.0"
    assert set(v6.benchmarks) == CHECKER_V6
    assert all(b.rounds == ("v6.0",) for b in v6.benchmarks.values())
    assert all(b.memory_gib for b in v6.benchmarks.values())


@pytest.mark.parametrize("name, datacenter, edge", [
    ("gpt-oss-120b", ("Offline", "Server"), None),
    ("qwen3-vl-235b-a22b", ("Offline", "Server"), None),
    ("wan-2.2-t2v-a14b", ("Offline", "SingleStream"), None),
    ("dlrm-v3", ("Offline", "Server"), None),
    ("yolo-95", None, ("Offline", "SingleStream", "MultiStream")),
    ("yolo-99", None, ("Offline", "SingleStream", "MultiStream")),
    ("pointpainting", None, ("SingleStream",)),
    ("rgat", ("Offline",), None),
    ("whisper", ("Offline",), ("Offline",)),
    ("resnet50", None, ("Offline", "SingleStream", "MultiStream")),
    ("3d-unet", ("Offline",), ("Offline", "SingleStream")),
])
def test_scenarios_per_class(v6, name, datacenter, edge):
    scenarios = v6.benchmarks[name].scenarios
    assert scenarios.get("datacenter") == datacenter
    assert scenarios.get("edge") == edge


@pytest.mark.parametrize("name, metric, reference, fractions", [
    ("gpt-oss-120b", "exact_match", 83.13, (0.99,)),
    ("qwen3-vl-235b-a22b", "f1", 79.03, (0.99,)),
    ("wan-2.2-t2v-a14b", "vbench_score", 70.48, (0.99,)),
    ("dlrm-v3", "AUC", 78.663, (0.999,)),
    ("yolo-95", "mAP", 53.4, (0.95,)),
    ("yolo-99", "mAP", 53.4, (0.99,)),
    ("pointpainting", "mAP", 54.25, (0.999,)),
    ("rgat", "accuracy", 72.86, (0.99,)),
    ("deepseek-r1", "exact_match", 81.3582, (0.99,)),
    ("3d-unet", "mean", 86.17, (0.99, 0.999)),
])
def test_accuracy_targets(v6, name, metric, reference, fractions):
    info = v6.benchmarks[name]
    assert (info.metric, info.reference, info.fractions) == (metric, reference, fractions)


@pytest.mark.parametrize("name, latency", [
    ("gpt-oss-120b", {"ttft_ms": 3000, "tpot_ms": 80, "interactive_ttft_ms": 2000, "interactive_tpot_ms": 15}),
    ("deepseek-r1", {"ttft_ms": 2000, "tpot_ms": 80, "interactive_ttft_ms": 1500, "interactive_tpot_ms": 15}),
    ("llama2-70b", {"ttft_ms": 2000, "tpot_ms": 200, "interactive_ttft_ms": 450, "interactive_tpot_ms": 40}),
    ("llama3.1-405b", {"ttft_ms": 6000, "tpot_ms": 175, "interactive_ttft_ms": 4500, "interactive_tpot_ms": 80}),
    ("qwen3-vl-235b-a22b", {"server_ms": 12000}),
    ("dlrm-v3", {"server_ms": 80}),
])
def test_server_and_interactive_bounds(v6, name, latency):
    assert v6.benchmarks[name].latency == latency


def test_dlrm_v3_other_targets(v6):
    assert v6.benchmarks["dlrm-v3"].others == {"NE": 86.687, "accuracy": 69.651}


@pytest.mark.parametrize("name, h200, h100", [
    ("whisper", "1g.18gb", "1g.10gb"),
    ("yolo-99", "1g.18gb", "1g.10gb"),
    ("llama3.1-8b", "1g.18gb", "1g.20gb"),
    ("wan-2.2-t2v-a14b", "3g.71gb", "7g.80gb"),
    ("gpt-oss-120b", "3g.71gb", "7g.80gb"),
    ("qwen3-vl-235b-a22b", None, None),
    ("dlrm-v3", None, None),
])
def test_planner_sizes_the_new_benchmarks(v6, name, h200, h100):
    need = v6.benchmarks[name].memory_gib
    assert smallest_fitting(H200, ["1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "7g.141gb"], need) in (
        h200, "7g.141gb" if h200 is None and need <= 140 else None)
    assert smallest_fitting(H100, ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"], need) == h100


def test_v6_suite_selects_its_round_and_sizes_slices_by_memory():
    suite = load_suite(V6_SUITE)
    assert suite.catalog.round == "v6.0" and suite.suite_class == "datacenter"
    on_h200 = {(c.benchmark, c.profile, c.skip_reason) for c in suite.expand("H200-141GB")}
    assert {(b, p) for b, p, _ in on_h200} == {("3d-unet", "1g.18gb"), ("whisper", "1g.18gb"),
                                               ("llama3.1-8b", "1g.18gb"), ("gpt-oss-120b", "3g.71gb")}
    assert not any(skip for _, _, skip in on_h200)
    gpt = [c for c in suite.expand("H100-SXM5-80GB") if c.benchmark == "gpt-oss-120b"]
    assert gpt and all("needs 67 GiB" in c.skip_reason for c in gpt)
    llama = next(c for c in suite.expand("H200-141GB") if c.benchmark == "gpt-oss-120b")
    assert (llama.accuracy_metric, llama.accuracy_reference) == ("exact_match", 83.13)


def test_v6_suite_collects_and_dry_runs(pytester):
    """The suite's own test module, collected and dry-run in a child session on a simulated H200."""
    r = pytester.runpytest_subprocess(str(V6_SUITE.parent), "-p", "no:xdist", "--mig-dry-run",
                                      "--mig-sim-gpu", "H200-141GB", "-rs",
                                      f"--mig-reports={pytester.path / 'reports'}")
    r.assert_outcomes(skipped=12)
    r.stdout.fnmatch_lines(["*dry run: * plan lines*whisper-Offline-1g.18gb-performance*",
                            "*has no MIG instance of profile 3g.71gb*"])


def work(benchmark: str) -> WorkSpec:
    return WorkSpec(role="main", name="main", benchmark=benchmark, scenario="Offline",
                    mode="performance", min_duration_ms=1, min_query_count=1, log_dir=Path("x"))


def test_nvidia_v6_names_and_config_ver():
    assert nvidia_benchmark("gpt-oss-120b") == "gpt-oss-120b"
    assert nvidia_benchmark("wan-2.2-t2v-a14b") == "wan22-a14b"
    assert nvidia_benchmark("qwen3-vl-235b-a22b") == "qwen3-vl-235b-a22b"
    assert config_ver(work("gpt-oss-120b"), {}) == "default"
