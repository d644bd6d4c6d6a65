"""Window counts from completions.tsv, per-slice figures, the aggregate and its text forms."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_mig.workload.completions import CompletionLog
from pytest_mig.report.junit import case_properties
from pytest_mig.report.slices_text import slice_label, slices_table
from pytest_mig.results.slices import MAIN_WINDOW, OWN_RUN, aggregate, slice_figure
from pytest_mig.results.window import count_window, read_completions, window_in_dir
from pytest_mig.types import BenchmarkResult


def _result(bench: str, metric: str, value: float, p99_ns: float = 2.5e6) -> BenchmarkResult:
    return BenchmarkResult(benchmark=bench, scenario="Offline", mode="performance",
                           result_dir=Path("."), valid=True, result_text="VALID",
                           metric_name=metric, metric_value=value,
                           latencies_ns={"p99": p99_ns})


def test_window_interpolates_between_lines_and_clips_partial_cover():
    points = [(100.0, 0), (101.0, 100), (103.0, 500)]
    w = count_window(points, 100.5, 102.0)  # 50 at 100.5, 300 at 102
    assert w.samples == pytest.approx(250) and w.seconds == pytest.approx(1.5)
    assert not w.partial and w.samples_per_s == pytest.approx(250 / 1.5)
    late = count_window(points, 102.0, 110.0)  # the log ends at 103
    assert late.partial and late.seconds == pytest.approx(1.0)
    assert late.samples == pytest.approx(200)
    assert count_window(points, 104.0, 105.0) is None
    assert count_window(points[:1], 100.0, 105.0) is None


def test_completion_log_is_read_back_and_skips_cut_lines(tmp_path: Path):
    log = CompletionLog(tmp_path, every_s=0.0)
    t0 = time.time()
    for _ in range(5):
        time.sleep(0.01)
        log.add(10)
    log.close()
    with open(tmp_path / "completions.tsv", "a") as fh:
        fh.write("12345.6\t")  # a line cut short by a kill
    points = read_completions(tmp_path / "completions.tsv")
    assert points[0][1] == 0 and points[-1][1] == 50
    w = window_in_dir(tmp_path, t0 - 1, time.time() + 1)
    assert w.samples == pytest.approx(50) and w.partial
    assert window_in_dir(tmp_path / "none", 0, 1) is None


def test_basis_window_for_backgrounds_headline_otherwise_latency_never_summed():
    main = slice_figure("main", "main", "resnet50", "Offline", "1g.10gb",
                        _result("resnet50", "Samples per second", 1000.0))
    from pytest_mig.results.window import WindowCount
    bg = slice_figure("bg1-bert", "background", "bert", "Offline", "1g.10gb",
                      _result("bert", "Samples per second", 300.0), WindowCount(500, 2.0, False))
    bg2 = slice_figure("bg2-bert", "background", "bert", "Offline", "2g.20gb",
                       _result("bert", "Samples per second", 200.0))
    ss = slice_figure("bg3-rnnt", "background", "rnnt", "SingleStream", "1g.10gb",
                      _result("rnnt", "90th percentile latency (ns)", 4.5e7))
    assert (bg.samples_per_s, bg.basis) == (250.0, MAIN_WINDOW)
    assert (bg2.samples_per_s, bg2.basis) == (200.0, OWN_RUN)
    assert ss.samples_per_s is None
    assert slice_label(ss).startswith("90th percentile latency (ns)=45 ms")  # ms, not 4.5e+07 ns
    agg = aggregate([main, bg, bg2, ss], isolated={"bert": (100.0, "single slice 1g.10gb")})
    assert set(agg.benchmarks) == {"resnet50", "bert"}
    bert = agg.benchmarks["bert"]
    assert bert.slices == 2 and bert.samples_per_s == pytest.approx(450.0)
    assert bert.normalised == pytest.approx(4.5) and bert.efficiency == pytest.approx(2.25)
    assert agg.benchmarks["resnet50"].normalised is None
    assert agg.total_samples_per_s is None  # resnet50 + bert samples/s are not one quantity
    assert agg.total_normalised is None  # resnet50 has no isolated rate
    both = aggregate([main, bg], isolated={"bert": (100.0, "x"), "resnet50": (500.0, "y")})
    assert both.total_normalised == pytest.approx(2.5 + 2.0)
    assert aggregate([bg, bg2]).total_samples_per_s == pytest.approx(450.0)
    record = {"case": "c", "slices": agg.to_dict(),
              "paths": {"dir": "/abs/reports/run-1/test_c"}}
    props = dict(case_properties(record, Path("/abs/reports"), simulated=True))
    assert props["mig_aggregate_bert"] == "450.0" and props["mig_aggregate_bert_unit"] == "samples/s"
    assert props["mig_aggregate_bert_normalised"] == "4.5"
    assert props["mig_aggregate_bert_normalised_unit"] == "isolated rates"
    assert props["mig_slice_main"] == "1000.0" and props["mig_slice_main_basis"] == "main run"
    assert props["mig_slice_bg1-bert"] == "250.0"
    assert "mig_slice_bg3-rnnt" not in props  # a latency is never a samples/s figure
    # samples/s of two models are not one quantity: no raw total; a normalised total only
    # when every benchmark has an isolated rate (resnet50 has none here)
    assert not any(k.startswith("mig_aggregate_total") or "normalised_total" in k for k in props)
    assert props["mig_dir"] == "run-1/test_c" and props["mig_simulated"] == "true"
    table = slices_table(agg)
    assert "500 in 2.00s" in table and "aggregate all" not in table
    assert "aggregate all benchmarks: 4.5 (each in units of its isolated rate)" in \
        slices_table(both)


def test_a_slice_without_result_says_why():
    f = slice_figure("bg1-dlrm", "background", "dlrm", "Offline", "1g.10gb", None,
                     error="bg1-dlrm: no result (no logs)")
    assert f.samples_per_s is None
    assert slice_label(f) == "no figure: bg1-dlrm: no result (no logs)"
    assert aggregate([f]).total_samples_per_s is None
