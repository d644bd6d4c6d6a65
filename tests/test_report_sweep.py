"""Profile-sweep rows from run records (batch size from the main's command, memory from its
timeline) and the curves picture; a record without a throughput figure stays n/a."""
from __future__ import annotations

from pathlib import Path

import pytest

from pngread import read_png
from pytest_mig.report.sweep import markdown, sweep_rows

TIMELINE = """# pytest-mig GPU metric timeline
# start_unix: 1000.000
time_unix,t_s,source,gpu_util_pct,gpu_mem_used_mib,gpu_mem_total_mib,power_w,sm_clock_mhz,temp_c
1000.0,0.0,measured,n/a,1024.0,81920.0,100.0,1400,40
1001.0,1.0,measured,n/a,9216.0,81920.0,300.0,1400,50
1002.0,2.0,measured,n/a,30720.0,81920.0,300.0,1400,50
# phase: main_start unix=1000.500
# phase: main_end unix=1001.500
"""


def _record(tmp_path: Path, profile: str, batch: int | None, value, metric: str) -> dict:
    d = tmp_path / f"{profile}-{batch}"
    d.mkdir()
    (d / "timeline.csv").write_text(TIMELINE)
    argv = ["python", "-m", "pytest_mig.workload"] + (
        ["--batch-size", str(batch)] if batch else [])
    return {"case": f"resnet50-Offline-{profile}-performance", "benchmark": "resnet50",
            "profile": profile, "commands": {"main": argv}, "paths": {"dir": str(d)},
            "result": {"metric": metric, "value": value, "valid": True,
                       "latencies_ns": {"p99": 2.5e6 * (batch or 1)}}}


def test_rows_sorted_by_profile_size_and_batch_with_memory_of_the_main_window(tmp_path):
    recs = [_record(tmp_path, "7g.80gb", 64, 9000.0, "Samples per second"),
            _record(tmp_path, "1g.10gb", 64, 1500.0, "Samples per second"),
            _record(tmp_path, "1g.10gb", 8, 900.0, "Samples per second"),
            _record(tmp_path, "2g.20gb", None, 4.5e7, "90th percentile latency (ns)")]
    rows = sweep_rows(recs)
    assert [(r.profile, r.batch) for r in rows] == [
        ("1g.10gb", "8"), ("1g.10gb", "64"), ("2g.20gb", "default"), ("7g.80gb", "64")]
    assert rows[0].samples_per_s == 900.0 and rows[0].p99_ms == pytest.approx(20.0)
    assert rows[2].samples_per_s is None  # a latency headline is not a throughput
    assert rows[0].mem_gib == 9.0  # peak inside main_start..main_end, not the 30 GiB after
    table = markdown(rows)
    assert "| resnet50 | 2g.20gb | default | n/a | 2.5 | 9 | True |" in table

    pytest.importorskip("matplotlib")
    from pytest_mig.report.plot_sweep import write_sweep_png
    png = read_png(write_sweep_png(rows, "resnet50", tmp_path / "s.png"))
    assert png.width == 1300 and len(png.colors) > 20
    assert write_sweep_png(rows, "bert", tmp_path / "none.png") is None
