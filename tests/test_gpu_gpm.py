"""GPM per-slice activity: samples per GPU instance read through nvmlGpmMetricsGet into the
timeline, per-case means over the main's run; `n/a` where GPM is unsupported."""
from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

from pytest_mig.gpu.gpm import GpmReader
from pytest_mig.gpu.topology import GpuMetrics
from pytest_mig.report.timeline import CSV_NAME, MetricsSampler, activity_means, read_timeline


class GpmApi:
    """NVML's GPM calls with pynvml's own structs; SM util = 10 x GI id (+1 on the GPU)."""

    def __init__(self, supported: bool = True) -> None:
        self.supported, self.samples, self.freed, self.next = supported, {}, 0, 1000

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlGpmQueryDeviceSupport(self, handle):
        return SimpleNamespace(isSupportedDevice=int(self.supported))

    def nvmlGpmSampleAlloc(self):
        self.next += 8
        return ctypes.cast(ctypes.c_void_p(self.next), pynvml.c_nvmlGpmSample_t)

    def _key(self, sample):
        return ctypes.cast(sample, ctypes.c_void_p).value

    def nvmlGpmSampleGet(self, handle, sample):
        self.samples[self._key(sample)] = (None, time.time())

    def nvmlGpmMigSampleGet(self, handle, gi, sample):
        self.samples[self._key(sample)] = (gi, time.time())

    def nvmlGpmSampleFree(self, sample):
        self.freed += 1

    def nvmlGpmMetricsGet(self, mg):
        gi1, t1 = self.samples[self._key(mg.sample1)]
        gi2, t2 = self.samples[self._key(mg.sample2)]
        assert gi1 == gi2 and t2 >= t1 and mg.numMetrics == 4
        for i in range(mg.numMetrics):
            m = mg.metrics[i]
            m.nvmlReturn = 0
            m.value = {pynvml.NVML_GPM_METRIC_SM_UTIL: 10.0 * (gi1 or 0.1)}.get(m.metricId, 1.5)
        return mg

    def sample_metrics(self, index):  # the wrapper's own call, for MetricsSampler
        return GpuMetrics(None, 1 << 30, 1 << 34, 90.0, 1400, 40, simulated=False)

    @property
    def api(self):
        return self


def test_reader_reads_each_gpu_instance_and_frees_samples():
    api = GpmApi()
    r = GpmReader(api, 0, {"main": 7, "bg1-bert": 9})
    assert r.supported and r.note == ""
    first = r.read()
    assert first["main"]["sm_util_pct"] == 70.0 and first["bg1-bert"]["sm_util_pct"] == 90.0
    assert first["main"]["tensor_util_pct"] == 1.5
    r.close()
    assert api.freed == 4  # two read-over samples, two held at close


def test_unsupported_gpu_says_na_and_adds_no_columns(tmp_path: Path):
    r = GpmReader(GpmApi(supported=False), 0, {"gpu": None})
    assert not r.supported and r.read() == {}
    assert r.note == "n/a: GPM not supported by this GPU (Hopper or later)"
    assert GpmReader(object(), 0, {"gpu": None}).note == "n/a: this NVML answers no GPM"
    s = MetricsSampler(GpmApi(), 0, [], 0.02, tmp_path / CSV_NAME, gpm=r).start()
    s.stop()
    tl = read_timeline(tmp_path / CSV_NAME)
    assert not [c for c in tl.series if c.startswith("gpm_")]
    assert activity_means(tl) == {"note": "n/a: GPM not supported by this GPU (Hopper or later)"}


def test_timeline_columns_and_means_over_the_main_run(tmp_path: Path):
    api = GpmApi()
    gpm = GpmReader(api, 0, {"main": 3, "bg1-dlrm": 5})
    s = MetricsSampler(api, 0, [], 0.02, tmp_path / CSV_NAME, gpm=gpm).start()
    start = time.time()
    time.sleep(0.15)
    s.stop({"main_start": start, "main_end": time.time()})
    tl = read_timeline(tmp_path / CSV_NAME)
    assert tl.meta["gpm"] == "per slice: main, bg1-dlrm"
    assert "gpm_bg1-dlrm_dram_bw_util_pct" in tl.series
    means = activity_means(tl)
    assert means["main"]["sm_util_pct"] == pytest.approx(30.0)
    assert means["bg1-dlrm"]["sm_util_pct"] == pytest.approx(50.0)
    assert (tmp_path / "timeline.png").exists()


class NanDramApi(GpmApi):
    """NVML answering NVML_SUCCESS with NaN for DRAM bandwidth on every other interval, as
    the H200 sweep's timelines implied (three profiles' DRAM-bandwidth means were NaN)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def nvmlGpmMetricsGet(self, mg):
        super().nvmlGpmMetricsGet(mg)
        self.calls += 1
        for i in range(mg.numMetrics):
            if mg.metrics[i].metricId == pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL and self.calls % 2:
                mg.metrics[i].value = float("nan")
        return mg


def test_nan_from_nvml_is_na_named_once_and_skipped_by_the_mean(tmp_path: Path):
    api = NanDramApi()
    gpm = GpmReader(api, 0, {"main": 3})
    first, second = gpm.read(), gpm.read()
    assert first["main"]["dram_bw_util_pct"] is None and second["main"]["dram_bw_util_pct"] == 1.5
    assert first["main"]["sm_util_pct"] == 30.0  # the other metrics of the interval are kept
    (problem,) = gpm.drain_problems()
    assert problem.startswith("GPM main dram_bw_util_pct: NVML answered nan (NVML_SUCCESS)")
    gpm.read()
    assert gpm.drain_problems() == []  # named once per reader
    s = MetricsSampler(api, 0, [], 0.02, tmp_path / CSV_NAME, gpm=gpm).start()
    start = time.time()
    time.sleep(0.2)
    s.stop({"main_start": start, "main_end": time.time()})
    text = (tmp_path / CSV_NAME).read_text()
    assert "nan" not in text.lower().replace("n/a", "")
    means = activity_means(read_timeline(tmp_path / CSV_NAME))["main"]
    assert means["dram_bw_util_pct"] == pytest.approx(1.5) and means["sm_util_pct"] == 30.0
    assert 0 < means["n/a"]["dram_bw_util_pct"] < means["samples"]
    assert set(means["n/a"]) == {"dram_bw_util_pct"}


def test_a_timeline_holding_nan_cells_gives_finite_means(tmp_path: Path):
    """Timelines written before the check hold `nan` cells: read back as n/a."""
    csv = tmp_path / CSV_NAME
    csv.write_text("# start_unix: 100.000\n# phase: main_start unix=100.000\n"
                   "# phase: main_end unix=101.000\n"
                   "time_unix,t_s,source,gpm_gpu_sm_util_pct,gpm_gpu_dram_bw_util_pct\n"
                   "100.2,0.2,measured,4.0,nan\n100.4,0.4,measured,6.0,2.0\n"
                   "100.6,0.6,measured,5.0,nan\n")
    means = activity_means(read_timeline(csv))
    assert means == {"gpu": {"sm_util_pct": 5.0, "dram_bw_util_pct": 2.0,
                             "n/a": {"dram_bw_util_pct": 2}, "samples": 3}}
    assert json.dumps(means, allow_nan=False)  # valid JSON: no bare NaN in results.json
