"""metrics.txt (OpenMetrics, GitLab's metrics report) and benchmark.json (github-action-benchmark's
custom format) from case records: read back with prometheus_client's OpenMetrics parser."""
from __future__ import annotations

import json

import pytest

from pytest_mig.report.figures import metric_unit, normalised_total
from pytest_mig.report.metrics_files import benchmark_entries, openmetrics, write_metrics

parser = pytest.importorskip("prometheus_client.openmetrics.parser")

RECORD = {
    "case": "resnet50-Offline-1g.10gb-accuracy",
    "result": {"result": "VALID", "metric": "Samples per second", "value": 412.5,
               "accuracy_metric": "top-1", "accuracy": 76.1, "accuracy_target": 75.3},
    "rounds": {"n": 3, "min": 400.0, "max": 420.0},
    "interference": 0.125,
    "gpu_busy": {"value": 0.875, "source": "NVML utilisation"},  # a fraction (report/busy.py)
    "slices": {"slices": [{"name": "main", "benchmark": "resnet50", "profile": "1g.10gb",
                           "samples_per_s": 412.5, "basis": "main run"},
                          {"name": "bg1-bert", "benchmark": "bert", "profile": "1g.10gb",
                           "samples_per_s": 33.0, "basis": "main window"}],
               "benchmarks": {"resnet50": {"slices": 1, "samples_per_s": 412.5},
                              "bert": {"slices": 1, "samples_per_s": 33.0}},
               "total_samples_per_s": 445.5},
}
LATENCY = {"case": "rnnt-SingleStream-1g.10gb-performance",
           "result": {"result": "VALID", "metric": "90.0th percentile latency (ns)",
                      "value": 4.5e7}}


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}


def test_openmetrics_has_one_gauge_per_kind_of_figure_and_parses():
    fams = _families(openmetrics([RECORD, LATENCY, {"case": "never-ran", "result": None}],
                                 simulated=True))
    assert set(fams) == {"mig_headline", "mig_accuracy", "mig_accuracy_target",
                         "mig_interference_ratio", "mig_gpu_busy_ratio",
                         "mig_slice_samples_per_second", "mig_aggregate"}
    head = {s.labels["case"]: s for s in fams["mig_headline"]}
    assert head[RECORD["case"]].value == 412.5
    assert head[RECORD["case"]].labels["unit"] == "samples/s"
    assert head[LATENCY["case"]].labels == {"case": LATENCY["case"], "simulated": "true",
                                             "unit": "ns", "metric": LATENCY["result"]["metric"]}
    assert fams["mig_accuracy"][0].labels["metric"] == "top-1"
    assert fams["mig_accuracy_target"][0].value == 75.3
    assert fams["mig_gpu_busy_ratio"][0].labels["source"] == "NVML utilisation"
    assert fams["mig_gpu_busy_ratio"][0].value == 0.875
    # per benchmark only: samples/s of resnet50 and bert are never added together
    assert sorted(s.labels["benchmark"] for s in fams["mig_aggregate"]) == ["bert", "resnet50"]
    assert all(s.labels["simulated"] == "true" for f in fams.values() for s in f)


def test_benchmark_json_splits_by_direction_with_range_from_rounds():
    bigger, smaller = benchmark_entries([RECORD, LATENCY], simulated=False)
    names = [e["name"] for e in bigger]
    assert f"{RECORD['case']} headline" in names and f"{RECORD['case']} gpu_busy" in names
    head = next(e for e in bigger if e["name"] == f"{RECORD['case']} headline")
    assert head == {"name": f"{RECORD['case']} headline", "unit": "samples/s", "value": 412.5,
                    "range": "± 12.5", "extra": "metric: Samples per second\nresult: VALID"}
    assert {e["name"] for e in smaller} == {f"{RECORD['case']} interference",
                                            f"{LATENCY['case']} headline"}
    for e in bigger + smaller:
        assert set(e) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(e["value"], float)


def test_written_files_in_a_run_folder(tmp_path):
    paths = write_metrics(tmp_path, [RECORD], simulated=True)
    assert [p.name for p in paths] == ["metrics.txt", "benchmark.json", "benchmark-smaller.json"]
    _families((tmp_path / "metrics.txt").read_text())
    entries = json.loads((tmp_path / "benchmark.json").read_text())
    assert all("SIMULATED GPU" in e["extra"] for e in entries)


def test_units_and_the_only_cross_model_total():
    assert metric_unit("Completed samples per second") == "samples/s"
    assert metric_unit("Tokens per second") == "tokens/s"
    assert metric_unit("99.00 percentile latency (ns)") == "ns"
    assert normalised_total({"a": {"normalised": 2.0}, "b": {"normalised": 0.5}}) == 2.5
    assert normalised_total({"a": {"normalised": 2.0}, "b": {"samples_per_s": 9.0}}) is None
