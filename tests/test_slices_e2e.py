"""A 7-slice case on the simulated A100 (7 x 1g.10gb): every slice runs real LoadGen (a SUT
answering at a set rate per benchmark, tests/programs/loadgen_sleeper.py); results.json,
the JUnit XML and the Allure results carry each slice's figure and the aggregate."""
from __future__ import annotations

import json
import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SLEEPER = Path(__file__).resolve().parent / "programs" / "loadgen_sleeper.py"
sys.path.insert(0, str(SLEEPER.parent))
from loadgen_sleeper import RATES  # noqa: E402

pytest.importorskip("mlperf_loadgen")

def test_seven_slices_report_each_figure_and_the_aggregate(mini_project):
    project = mini_project("seven")
    project.command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(SLEEPER))} --benchmark "
                       "{benchmark} --log-dir {log_dir} --min-duration-ms {min_duration_ms}")
    reports = project.reports
    project.flags = [f"--mig-reports={reports}", "--mig-sample-interval=0.2"]
    result = project.run(None, f"--junitxml={project.path / 'junit.xml'}", "-o",
                         "junit_family=xunit1",
                         f"--alluredir={project.path / 'allure'}")
    result.assert_outcomes(passed=1)
    (results,) = reports.glob("*/results.json")
    (test,) = json.loads(results.read_text())["tests"]
    slices = test["slices"]["slices"]
    # main + 6 backgrounds (sorted distinct names, NVIDIA's rule), each on its own 1g.10gb
    assert [s["name"] for s in slices] == ["main"] + [f"bg{i}-{b}" for i, b in enumerate(
        ["3d-unet", "bert", "dlrm", "rnnt", "ssd-mobilenet", "ssd-resnet34"], start=1)]
    assert {s["profile"] for s in slices} == {"1g.10gb"}
    for s in slices:
        rate = RATES[s["benchmark"]]
        assert s["result"] == "VALID" and s["metric"] == "Samples per second"
        # each background's own LoadGen summary is parsed like the main's
        assert s["value"] == pytest.approx(rate, rel=0.35), s
        assert s["latencies_ms"]["p99"] == pytest.approx(s["latencies_ns"]["p99"] / 1e6)
        if s["role"] == "background":  # counted inside the main's timed phase
            assert s["basis"] == "main window" and s["window_source"] == "completions.tsv"
            assert s["window_s"] > 0.8 and not s["window_partial"], s
            assert s["samples_per_s"] == pytest.approx(rate, rel=0.35), s
    by_bench = test["slices"]["benchmarks"]
    assert set(by_bench) == set(RATES)
    for bench, agg in by_bench.items():
        assert agg["slices"] == 1
        assert agg["samples_per_s"] == pytest.approx(
            sum(s["samples_per_s"] for s in slices if s["benchmark"] == bench))
    # six benchmarks: their samples/s are never added together (no isolated rates here)
    assert test["slices"]["total_samples_per_s"] is None
    assert test["slices"]["total_normalised"] is None

    # GPM: the simulated A100 (pre-Hopper) answers NOT_SUPPORTED, the record says n/a
    assert test["activity"] == {"note": "n/a: GPM not supported by this GPU (Hopper or later)"}

    # CPU placement, recorded per workload: a no-op that says so with fewer cores than 7
    import os
    cores = len(os.sched_getaffinity(0))
    placement = test["placement"]
    assert set(placement) == {s["name"] for s in slices}
    if cores < 7:
        assert {p["pinned"] for p in placement.values()} == {False}
        assert placement["main"]["note"].startswith(
            f"not pinned: {cores} CPU core(s) for 7 workload(s) on GPU 0")
    else:
        shares = [set(p["cpus"]) for p in placement.values()]
        assert all(p["pinned"] for p in placement.values())
        assert sum(len(s) for s in shares) == len(set().union(*shares))  # disjoint

    props = {p.get("name"): p.get("value") for p in
             ET.parse(project.path / "junit.xml").getroot().iter("property")}
    assert float(props["mig_slice_bg3-dlrm"]) == pytest.approx(
        next(s["samples_per_s"] for s in slices if s["name"] == "bg3-dlrm"))
    assert props["mig_slice_bg3-dlrm_unit"] == "samples/s"
    assert props["mig_slice_bg3-dlrm_basis"] == "main window"
    assert float(props["mig_aggregate_bert"]) == pytest.approx(by_bench["bert"]["samples_per_s"])
    assert "mig_aggregate_total" not in props  # samples/s of different models are not summed

    attachments = [a for f in (project.path / "allure").glob("*-result.json")
                   for a in json.loads(f.read_text()).get("attachments", [])]
    (table,) = [a for a in attachments if a["name"] == "slices and aggregate"]
    text = (project.path / "allure" / table["source"]).read_text()
    assert "aggregate dlrm:" in text and "bg6-ssd-resnet34" in text
