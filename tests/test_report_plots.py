"""Pictures drawn with matplotlib: the case timeline, the nightly trend with its fail line;
and the plugin's behaviour without matplotlib (a note, no picture, the run goes on)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pngread import has_color_near, read_png
from pytest_mig.report.compare import HIGHER, LOWER, CompareSpec
from pytest_mig.report.history import HistoryEntry
from pytest_mig.report.plot_timeline import left_out, panels, write_timeline_png
from pytest_mig.report.plot_trend import threshold_line, write_trend_png
from pytest_mig.report.timeline import CSV_NAME, MetricsSampler, Timeline, read_timeline

pytest.importorskip("matplotlib")


def _timeline(simulated: bool) -> Timeline:
    t = [i * 0.5 for i in range(20)]
    return Timeline(
        t=t, series={"gpu_util_pct": [None] * 20, "gpu_mem_used_mib": [2048.0 + i for i in t],
                     "power_w": [100 + 10 * i for i in t], "sm_clock_mhz": [1400.0] * 20,
                     "temp_c": [40.0] * 20, "mig_main_mem_used_mib": [1024.0] * 20,
                     "mig_bg1-bert_mem_used_mib": [512.0] * 20},
        phases={"backgrounds_ready": 1.0, "main_start": 2.0, "main_end": 8.0},
        meta={"source": "SIMULATED (made up)" if simulated else "measured (real NVML)",
              "gpu": "0 A100-SXM4-80GB"})


def test_timeline_has_phase_markers_and_says_simulated_in_red(tmp_path: Path):
    tl = _timeline(simulated=True)
    # the simulator's constant SM clock and temperature are left out, and said so
    assert [p[0] for p in panels(tl)] == ["GPU util %", "memory GiB", "power W"]
    assert left_out(tl) == ["SM clock MHz", "temperature C"]
    assert [p[0] for p in panels(_timeline(simulated=False))][-2:] == ["SM clock MHz",
                                                                       "temperature C"]
    png = read_png(write_timeline_png(tl, tmp_path / "t.png"))
    assert png.width == 1000 and png.height > 600
    for color in ((30, 90, 220), (200, 40, 40), (0, 150, 70)):  # main start/end, bg ready
        assert has_color_near(png.colors, color, tol=10), color
    measured = read_png(write_timeline_png(_timeline(simulated=False), tmp_path / "m.png"))
    # the red title only on the simulated one (main_end's dashed line is the same red, so
    # compare how much of that red each picture holds)
    red = lambda p: sum(1 for i in range(0, len(p.pixels), 3)  # noqa: E731
                        if abs(p.pixels[i] - 200) < 8 and p.pixels[i + 1] < 60)
    assert red(png) > red(measured) + 200


def test_without_matplotlib_the_timeline_is_written_with_a_note(tmp_path: Path, monkeypatch):
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError

    class Nvml:
        def sample_metrics(self, index):
            from pytest_mig.gpu.topology import GpuMetrics
            return GpuMetrics(util_pct=5.0, mem_used=1 << 30, mem_total=1 << 34, power_w=90.0,
                              sm_clock_mhz=1400.0, temp_c=40.0, simulated=False)

    s = MetricsSampler(Nvml(), 0, [], 0.05, tmp_path / CSV_NAME).start()
    s.stop({"main_start": s._t0})
    assert not (tmp_path / "timeline.png").exists()
    assert "# note: chart not drawn: matplotlib not installed: pip install 'pytest-mig[plots]'" \
        in (tmp_path / CSV_NAME).read_text()
    assert read_timeline(tmp_path / CSV_NAME).phases == {"main_start": pytest.approx(0, abs=1e-3)}


def test_threshold_line_follows_the_compare_gate():
    values = [(100.0, True), (110.0, True), (50.0, False), (104.0, True)]
    # last passed run, 5 %: nothing before run 1; run 3's baseline skips the failed run 2
    assert threshold_line(values, 5, HIGHER, CompareSpec("last")) == [
        None, pytest.approx(95.0), pytest.approx(104.5), pytest.approx(104.5)]
    assert threshold_line(values, 10, LOWER, CompareSpec("median", 3))[3] == pytest.approx(
        115.5)  # median(100, 110) * 1.1


def _entry(run: int, value: float, outcome: str = "passed",
           metric: str = "90th percentile latency (ns)") -> HistoryEntry:
    return HistoryEntry(case="rnnt-SingleStream-1g.10gb-performance", run_id=f"2026113{run}",
                        timestamp="", outcome=outcome, gpu_model="A100-SXM4-80GB",
                        backend="nvml", metric=metric, value=value)


def test_trend_draws_runs_and_the_fail_line(tmp_path: Path):
    entries = [_entry(1, 4.5e7), _entry(2, 4.4e7), _entry(3, 6.0e7, "failed"),
               _entry(4, 4.6e7), _entry(5, 1.0, metric="")]  # no metric: not drawn
    path = write_trend_png(entries, tmp_path / "trend.png",
                           ["rnnt-SingleStream-1g.10gb-performance"], {"latency": 10.0},
                           CompareSpec("last"))
    png = read_png(path)
    assert png.width == 1000
    assert has_color_near(png.colors, (30, 90, 220))  # passed runs
    assert has_color_near(png.colors, (200, 40, 40))  # fail line and the failed run's cross
    assert write_trend_png(entries, tmp_path / "none.png", ["other"], {}, None) is None


def test_trend_runs_are_placed_by_their_time():
    from datetime import datetime

    from pytest_mig.report.plot_trend import run_time
    e = _entry(1, 1.0)
    assert run_time(e) is None  # neither a timestamp nor a dated run id
    from dataclasses import replace
    e = replace(e, run_id="20261207-001426-de4b709c")
    assert run_time(e) == datetime(2026, 12, 7, 0, 14, 26)
    e = replace(e, timestamp="2026-12-08T10:00:00+0000")
    assert run_time(e) == datetime(2026, 12, 8, 10, 0, 0)
