"""The real suites load, validate against GPU tables and expand into the exact Cases."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import SuiteError
from pytest_mig.plan.suite import find_suites, load_catalog, load_suite
from pytest_mig.types import RunProfile

REPO = Path(__file__).resolve().parent.parent
DATACENTER = REPO / "suites" / "datacenter" / "suite.yaml"
EDGE = REPO / "suites" / "edge" / "suite.yaml"
DATACENTER_V5 = REPO / "suites" / "datacenter-v5" / "suite.yaml"
DATACENTER_V6 = REPO / "suites" / "datacenter-v6" / "suite.yaml"
GPU_TABLES = {  # MIG profiles per model as NVML lists them
    "A100-SXM4-80GB": "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb",
    "A100-SXM4-40GB": "1g.5gb 1g.5gb+me 1g.10gb 2g.10gb 3g.20gb 4g.20gb 7g.40gb",
    "A30-24GB": "1g.6gb 1g.6gb+me 2g.12gb 2g.12gb+me 4g.24gb",
    "H100-SXM5-80GB": "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb",
    "H200-141GB": "1g.18gb 1g.18gb+me 1g.35gb 2g.35gb 3g.71gb 4g.71gb 7g.141gb",
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The real catalogue with GPU tables of our own: independent of fixtures/gpus."""
    gpus = tmp_path_factory.mktemp("gpus")
    for model, profiles in GPU_TABLES.items():
        (gpus / f"{model}.yaml").write_text(f"profiles: [{', '.join(profiles.split())}]\n")
    return load_catalog(gpus_dir=gpus)


@pytest.fixture(scope="module")
def datacenter(catalog):
    return load_suite(DATACENTER, catalog)


def test_find_suites():
    assert find_suites(REPO / "suites") == [DATACENTER, DATACENTER_V5, DATACENTER_V6, EDGE,
                                            REPO / "suites" / "layouts" / "suite.yaml",
                                            REPO / "suites" / "sweeps" / "suite.yaml"]


def test_suites_load_with_default_catalog():
    assert load_suite(DATACENTER).name == "datacenter"
    assert load_suite(EDGE).name == "edge"


def test_datacenter_fields(datacenter):
    assert datacenter.suite_class == "datacenter"
    assert list(datacenter.benchmarks) == [
        "resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "dlrm", "3d-unet"]
    assert datacenter.modes == ("performance", "accuracy")
    assert datacenter.background.spec == "datacenter"
    assert datacenter.background.lifetime == "session"
    assert datacenter.harness == {"size": "tiny", "precision": "auto", "precision.rnnt": "fp32"}
    assert datacenter.default_run_profile == "smoke"
    assert datacenter.run_profiles["smoke"] == RunProfile(
        "smoke", min_duration_ms=1000, min_query_count=64, start_time_buffer_s=60.0,
        end_time_buffer_min_s=0.5, background_min_duration_ms=None, sample_count=64)
    assert datacenter.run_profiles["submission"].min_duration_ms == 600_000
    assert {m: (g.profiles, g.slots) for m, g in datacenter.gpus.items()} == {
        "A100-SXM4-80GB": (("1g.10gb",), 7), "A100-SXM4-40GB": (("1g.5gb",), 7),
        "A30-24GB": (("1g.6gb",), 4), "H100-SXM5-80GB": (("1g.10gb",), 7),
        "H200-141GB": (("1g.18gb",), 7)}


def test_datacenter_expansion_a100(datacenter):
    cases = datacenter.expand("A100-SXM4-80GB")
    # 3+3+2+3+3+2+2 = 18 benchmark x scenario pairs, x 1 profile x 2 modes.
    assert len(cases) == 36
    assert len({c.id for c in cases}) == 36
    assert [c.id for c in cases[:8]] == [
        "resnet50-Offline-1g.10gb-performance", "resnet50-Offline-1g.10gb-accuracy",
        "resnet50-SingleStream-1g.10gb-performance", "resnet50-SingleStream-1g.10gb-accuracy",
        "resnet50-Server-1g.10gb-performance", "resnet50-Server-1g.10gb-accuracy",
        "ssd-resnet34-Offline-1g.10gb-performance", "ssd-resnet34-Offline-1g.10gb-accuracy"]
    assert "ssd-resnet34-Server-1g.10gb-performance" in {c.id for c in cases}
    assert cases[-1].id == "3d-unet-SingleStream-1g.10gb-accuracy"
    # What `-k ssd` selects: ssd-resnet34 (3 scenarios) + ssd-mobilenet (2), x 2 modes.
    assert len([c for c in cases if "ssd" in c.id]) == 10
    assert len([c for c in cases if "Server" in c.id]) == 10


def test_case_fields(datacenter):
    case = next(c for c in datacenter.expand("A100-SXM4-80GB", "nightly")
                if c.id == "bert-Server-1g.10gb-accuracy")
    assert case.suite == "datacenter"
    assert case.gpu_model == "A100-SXM4-80GB"
    assert case.background == ("3d-unet", "bert", "dlrm", "resnet50", "rnnt", "ssd-resnet34")
    assert case.background_spec == "datacenter"
    assert case.background_lifetime == "session"
    assert (case.accuracy_metric, case.accuracy_reference, case.accuracy_fraction) == (
        "f1", 90.874, 0.99)
    assert case.run_profile.name == "nightly"
    assert case.run_profile.min_duration_ms == 60000
    assert dict(case.harness_options) == {"size": "tiny", "precision": "auto",
                                          "precision.rnnt": "fp32"}
    assert case.skip_reason is None


def test_a30_has_three_background_slots(datacenter):
    cases = datacenter.expand("A30-24GB")
    assert len(cases) == 36
    by_id = {c.id: c for c in cases}
    assert by_id["bert-Offline-1g.6gb-performance"].background == ("3d-unet", "dlrm", "resnet50")
    assert by_id["ssd-mobilenet-Offline-1g.6gb-performance"].background == (
        "3d-unet", "bert", "dlrm")
    assert by_id["3d-unet-Offline-1g.6gb-accuracy"].background == ("bert", "dlrm", "resnet50")


def test_free_slots_override(datacenter):
    cases = datacenter.expand("A100-SXM4-80GB", free_slots=2)
    assert cases[0].background == ("3d-unet", "bert")
    assert datacenter.expand("A100-SXM4-80GB", free_slots=0)[0].background == ()
    with pytest.raises(SuiteError, match="free_slots must be >= 0"):
        datacenter.expand("A100-SXM4-80GB", free_slots=-1)


def test_unsupported_gpu_model(datacenter):
    assert datacenter.expand("V100-SXM2-32GB") == []
    reason = datacenter.unsupported_reason("V100-SXM2-32GB")
    assert "suite 'datacenter' lists no MIG profiles for GPU model 'V100-SXM2-32GB'" in reason
    assert "A100-SXM4-80GB, A100-SXM4-40GB, A30-24GB, H100-SXM5-80GB, H200-141GB" in reason
    assert "did you mean 'A100-SXM4-80GB'" in datacenter.unsupported_reason("A100-SXM4-80G")
    assert datacenter.unsupported_reason("H200-141GB") is None


def test_unknown_run_profile(datacenter):
    with pytest.raises(SuiteError) as err:
        datacenter.expand("A100-SXM4-80GB", run_profile="nighty")
    text = str(err.value)
    assert "did you mean 'nightly'" in text
    assert "smoke, nightly, submission" in text
    assert "suite.yaml" in text


def test_edge_expansion(catalog):
    edge = load_suite(EDGE, catalog)
    assert edge.suite_class == "edge"
    cases = edge.expand("H200-141GB")
    # resnet50, ssd-resnet34, ssd-mobilenet 3 each; bert, rnnt, 3d-unet 2 each: 15 x 2 modes.
    assert len(cases) == 30
    assert "dlrm" not in {c.benchmark for c in cases}
    assert "Server" not in {c.scenario for c in cases}
    assert len([c for c in cases if c.scenario == "MultiStream"]) == 6
    assert "ssd-mobilenet-MultiStream-1g.18gb-accuracy" in {c.id for c in cases}
    assert cases[0].background == (
        "3d-unet", "bert", "resnet50", "rnnt", "ssd-mobilenet", "ssd-resnet34")


def test_explicit_background_and_per_test_lifetime(catalog, tmp_path):
    text = DATACENTER.read_text().replace("  set: datacenter\n", "  set: [rnnt, bert]\n")
    text = text.replace("  lifetime: session", "  lifetime: per-test")
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    suite = load_suite(path, catalog)
    case = suite.expand("A100-SXM4-80GB")[0]
    assert (case.background, case.background_spec, case.background_lifetime) == (
        ("bert", "rnnt"), "explicit", "per-test")
