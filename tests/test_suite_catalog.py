"""The benchmark catalogue and NVIDIA's background-resolution rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import SuiteError
from pytest_mig.plan.suite import load_catalog, resolve_background

REPO = Path(__file__).resolve().parent.parent
ALL7 = ("3d-unet", "bert", "dlrm", "resnet50", "rnnt", "ssd-mobilenet", "ssd-resnet34")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_default_path_is_repo_fixtures(monkeypatch):
    monkeypatch.delenv("PYTEST_MIG_DATA", raising=False)
    catalog = load_catalog()
    assert catalog.path == REPO / "fixtures" / "benchmarks.yaml"
    assert "inference_results_v1.1" in catalog.source


def test_env_override(tmp_path, monkeypatch):
    text = (REPO / "fixtures" / "benchmarks.yaml").read_text()
    (tmp_path / "benchmarks.yaml").write_text(text.replace("reference: 76.46", "reference: 1.5"))
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "X1-8GB.yaml").write_text("profiles: [1g.8gb, 2g.8gb+me, 7g]\n")
    monkeypatch.setenv("PYTEST_MIG_DATA", str(tmp_path))
    cat = load_catalog()
    assert cat.path == tmp_path / "benchmarks.yaml"
    assert cat.benchmarks["resnet50"].reference == 1.5
    assert cat.gpu_models == {"X1-8GB": frozenset({"1g.8gb", "2g.8gb+me"})}


def test_benchmark_set(catalog):
    assert set(catalog.benchmarks) == set(ALL7)
    assert catalog.suite_classes == ("datacenter", "edge")
    assert catalog.benchmarks_for("edge") == (
        "resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "3d-unet")


@pytest.mark.parametrize("name, datacenter, edge", [
    ("resnet50", ("Offline", "SingleStream", "Server"), ("Offline", "SingleStream", "MultiStream")),
    ("ssd-resnet34", ("Offline", "SingleStream", "Server"),
     ("Offline", "SingleStream", "MultiStream")),
    ("ssd-mobilenet", ("Offline", "SingleStream"), ("Offline", "SingleStream", "MultiStream")),
    ("bert", ("Offline", "SingleStream", "Server"), ("Offline", "SingleStream")),
    ("rnnt", ("Offline", "SingleStream", "Server"), ("Offline", "SingleStream")),
    ("dlrm", ("Offline", "Server"), None),
    ("3d-unet", ("Offline", "SingleStream"), ("Offline", "SingleStream")),
])
def test_scenarios(catalog, name, datacenter, edge):
    scenarios = catalog.benchmarks[name].scenarios
    assert scenarios["datacenter"] == datacenter
    assert scenarios.get("edge") == edge


@pytest.mark.parametrize("name, metric, reference, fractions", [
    ("resnet50", "accuracy", 76.46, (0.99,)),
    ("ssd-resnet34", "mAP", 20.0, (0.99,)),
    ("ssd-mobilenet", "mAP", 22.0, (0.99,)),
    ("bert", "f1", 90.874, (0.99, 0.999)),
    ("rnnt", "accuracy", 92.548, (0.99,)),
    ("dlrm", "AUC", 80.25, (0.99, 0.999)),
    ("3d-unet", "mean", 85.30, (0.99, 0.999)),
])
def test_accuracy(catalog, name, metric, reference, fractions):
    info = catalog.benchmarks[name]
    assert (info.metric, info.reference, info.fractions) == (metric, reference, fractions)


def test_aliases(catalog):
    assert catalog.aliases == {
        "datacenter": ("3d-unet", "bert", "dlrm", "rnnt", "resnet50", "ssd-resnet34"),
        "edge": ("3d-unet", "bert", "rnnt", "resnet50", "ssd-mobilenet", "ssd-resnet34"),
        "all": ("3d-unet", "bert", "dlrm", "rnnt", "resnet50", "ssd-mobilenet", "ssd-resnet34"),
        "none": (),
    }


@pytest.mark.parametrize("spec, main, free, expected", [
    # Fits: aliases come back sorted and the main stays in the background.
    ("datacenter", "resnet50", 6,
     ("3d-unet", "bert", "dlrm", "resnet50", "rnnt", "ssd-resnet34")),
    ("edge", "bert", 6, ("3d-unet", "bert", "resnet50", "rnnt", "ssd-mobilenet", "ssd-resnet34")),
    # Does not fit: the main is removed first, then the rest is cut to the free slots.
    ("datacenter", "bert", 3, ("3d-unet", "dlrm", "resnet50")),
    ("all", "ssd-mobilenet", 6, ("3d-unet", "bert", "dlrm", "resnet50", "rnnt", "ssd-resnet34")),
    ("all", "3d-unet", 6, ("bert", "dlrm", "resnet50", "rnnt", "ssd-mobilenet", "ssd-resnet34")),
    # Main not in the set: only the cut applies.
    ("datacenter", "ssd-mobilenet", 3, ("3d-unet", "bert", "dlrm")),
    ("none", "resnet50", 6, ()),
    ("datacenter", "resnet50", 0, ()),
    # Explicit lists: sorted, de-duplicated, same rule.
    (["rnnt", "bert", "bert"], "resnet50", 6, ("bert", "rnnt")),
    (["rnnt", "bert", "resnet50"], "resnet50", 2, ("bert", "rnnt")),
    (["rnnt", "bert", "resnet50"], "resnet50", 3, ("bert", "resnet50", "rnnt")),
    ([], "resnet50", 6, ()),
])
def test_resolve_background(catalog, spec, main, free, expected):
    assert resolve_background(spec, main, free, catalog) == expected


def test_resolve_background_unknown_names(catalog):
    with pytest.raises(SuiteError) as err:
        resolve_background("datacentre", "bert", 6, catalog)
    assert "did you mean 'datacenter'" in str(err.value)
    assert "allowed: datacenter, edge, all, none" in str(err.value)
    with pytest.raises(SuiteError, match="did you mean 'rnnt'"):
        resolve_background(["rnt"], "bert", 6, catalog)


def test_catalog_errors_have_lines(tmp_path):
    text = (REPO / "fixtures" / "benchmarks.yaml").read_text()
    bad = text.replace("fractions: [0.99, 0.999]}\n  rnnt:", "fractions: [0.99, 1.5]}\n  rnnt:")
    path = tmp_path / "benchmarks.yaml"
    path.write_text(bad)
    with pytest.raises(SuiteError) as err:
        load_catalog(path)
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "1.5]" in ln)
    assert err.value.line == line
    assert err.value.key == "benchmarks.bert.accuracy.fractions[1]"
    assert f"benchmarks.yaml:{line}" in str(err.value)

    path.write_text(text.replace("edge: [Offline, SingleStream]\n    accuracy: {metric: f1",
                                 "edge: [Ofline, SingleStream]\n    accuracy: {metric: f1"))
    with pytest.raises(SuiteError, match="did you mean 'Offline'"):
        load_catalog(path)


def test_data_override_reaches_every_reader(tmp_path, monkeypatch):
    """One override: the profile tables and layouts honour $PYTEST_MIG_DATA like the catalogue."""
    from pytest_mig.gpu.layouts import default_layout_dir
    from pytest_mig.gpu.profiles import default_gpu_dir, load_models
    packaged = REPO / "fixtures"
    (tmp_path / "gpus").mkdir()
    text = (packaged / "gpus" / "A30-24GB.yaml").read_text()
    (tmp_path / "gpus" / "Z9-24GB.yaml").write_text(text.replace("model: A30-24GB", "model: Z9-24GB"))
    monkeypatch.setenv("PYTEST_MIG_DATA", str(tmp_path))
    assert default_gpu_dir() == tmp_path / "gpus"
    assert set(load_models()) == {"Z9-24GB"}
    # layouts/ is missing from the override: the packaged one is used
    assert default_layout_dir() == packaged / "layouts"
    monkeypatch.delenv("PYTEST_MIG_DATA")
    assert "A30-24GB" in load_models()
