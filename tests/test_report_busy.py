"""GPU busy (report/busy.py): the share of each slice busy during the main's timed phase, from
a timeline: a MIG instance's own GPM reading, the whole GPU's GPM reading over the slices' SM
fraction (MPS, shared), NVML utilisation without GPM; n/a cells skipped, never estimated; the
host-bound warning and its threshold."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_mig.report.busy import (SliceShare, busy_text, busy_warning, gpu_busy, main_window,
                                    slot_shares)
from pytest_mig.report.timeline import Timeline
from pytest_mig.types import Finished, Partition

H100_1G = 16 / 132  # H100-SXM5-80GB 1g.10gb: 16 of 132 SMs


def timeline(series: dict[str, list[float | None]], *, simulated: bool = False,
             gpm: str = "per slice: gpu") -> Timeline:
    """Rows every 0.5 s from t=0.5 (start_unix 1000), the sampler's interval 0.5 s."""
    n = len(next(iter(series.values())))
    meta = {"interval_s": "0.5", "gpm": gpm,
            "source": "SIMULATED (values made up)" if simulated else "measured (real NVML)"}
    return Timeline(t=[0.5 * (i + 1) for i in range(n)], series=series, meta=meta,
                    start_unix=1000.0)


WINDOW = (1001.0, 1003.0)  # t = 1.0 .. 3.0: rows at 1.5, 2.0, 2.5, 3.0 lie wholly inside


def test_mps_share_alone_divides_whole_gpu_sm_activity_by_its_sm_fraction():
    # The H200 sweep's 1g.18gb main: 3.51 % of the whole GPU's SMs is 29 % of a 16/132 share.
    tl = timeline({"gpm_gpu_sm_util_pct": [90.0, 90.0, 3.0, 4.0, 3.5, 3.54, 0.0]})
    busy = gpu_busy(tl, [SliceShare("main", "mps", H100_1G)], WINDOW)
    assert busy["value"] == pytest.approx(0.035 / H100_1G, abs=1e-3)  # rows at 1.5..3.0 only
    assert busy["samples"] == 4 and busy["simulated"] is False and busy["backgrounds"] == {}
    assert busy["source"] == ("GPM SM activity of the whole GPU 3.5 % / SM fraction 12.1% of "
                              "its slice (mps)")
    assert busy["window"] == "timed phase (ready line to exit), 2.0 s"
    assert busy_text(busy) == "29 %"


def test_mps_with_backgrounds_is_all_slices_together_and_capped():
    tl = timeline({"gpm_gpu_sm_util_pct": [50.0] * 8})
    shares = [SliceShare("main", "mps", H100_1G), SliceShare("bg1-bert", "mps", H100_1G)]
    busy = gpu_busy(tl, shares, WINDOW)
    assert busy["value"] == 1.0 and busy["capped"] == pytest.approx(0.5 / (2 * H100_1G), abs=1e-3)
    assert "all 2 slices together" in busy["source"] and "SM fraction 24.2%" in busy["source"]
    assert busy["backgrounds"]["bg1-bert"]["value"] == 1.0
    low = gpu_busy(timeline({"gpm_gpu_sm_util_pct": [12.1] * 8}), shares, WINDOW)
    assert low["value"] == pytest.approx(0.5, abs=1e-3) and "capped" not in low


def test_mig_reads_each_gpu_instance_and_skips_na_cells():
    tl = timeline({"gpm_main_sm_util_pct": [0.0, 0.0, 80.0, None, 90.0, 85.0, 0.0],
                   "gpm_bg1-dlrm_sm_util_pct": [0.0, 0.0, 40.0, 40.0, 40.0, 40.0, 0.0],
                   "gpm_gpu_sm_util_pct": [5.0] * 7}, gpm="per slice: main, bg1-dlrm")
    shares = [SliceShare("main", "mig", H100_1G, gi_id=7), SliceShare("bg1-dlrm", "mig", 0.5,
                                                                      gi_id=1)]
    busy = gpu_busy(tl, shares, WINDOW)
    assert busy["value"] == 0.85 and busy["samples"] == 3
    assert busy["source"] == "GPM SM activity of its GPU instance 7 (MIG)"
    assert busy["backgrounds"] == {"bg1-dlrm": {
        "value": 0.4, "samples": 4, "source": "GPM SM activity of its GPU instance 1 (MIG)"}}


def test_without_gpm_nvml_utilisation_and_in_mig_mode_na():
    note = "n/a: GPM not supported by this GPU (Hopper or later)"
    tl = timeline({"gpu_util_pct": [0.0, 0.0, 70.0, 80.0, None, 75.0, 0.0]}, gpm=note)
    busy = gpu_busy(tl, [SliceShare("main", "mps", 14 / 98)], WINDOW)
    assert busy["value"] == 0.75  # NVML's time share as it is: not divided by the SM fraction
    assert busy["source"].startswith("NVML utilisation of the whole GPU (share of time any "
                                     "kernel ran, not of SMs; GPM GPM not supported")
    mig = gpu_busy(timeline({"gpu_util_pct": [None] * 7}, gpm=note),
                   [SliceShare("main", "mig", 14 / 98, gi_id=9)], WINDOW)
    assert mig["value"] is None and busy_text(mig) == "n/a"
    assert mig["source"] == (f"n/a: no GPM reading of GPU instance 9 ({note}), and NVML "
                             "reports no utilisation in MIG mode")
    assert busy_warning(mig, 60) == ""  # nothing measured: no claim either way


def test_simulated_is_labelled_and_its_warning_says_nothing_was_measured():
    tl = timeline({"gpm_gpu_sm_util_pct": [1.5] * 8}, simulated=True)
    busy = gpu_busy(tl, [SliceShare("main", "none", H100_1G)], WINDOW)
    assert busy["simulated"] is True and busy["source"].startswith("SIMULATED: GPM SM activity")
    assert busy_text(busy) == "12 %, simulated"
    text = busy_warning(busy, 60)
    assert text.startswith("host-bound: GPU busy 12 % during the main; the figure measures the "
                           "workload's host path, not the GPU (SIMULATED: ")
    assert text.endswith("--mig-min-busy=60) [SIMULATED GPU: made-up GPM values of the NVML "
                         "simulator; this exercises the check, the workload was not measured]")


def test_threshold_edges():
    busy = {"value": 0.6, "source": "s", "simulated": False}
    assert busy_warning(busy, 60) == "" and busy_warning(busy, 60.5) != ""
    assert busy_warning({"value": 0.0, "source": "s"}, 0) == ""  # 0 turns the warning off
    assert busy_warning({"value": 0.13, "source": "GPM x"}, 60) == (
        "host-bound: GPU busy 13 % during the main; the figure measures the workload's host "
        "path, not the GPU (GPM x; --mig-min-busy=60)")


def test_unsampled_and_main_never_ran():
    assert gpu_busy(None, [], None)["source"] == "not sampled (--mig-sample-interval=0)"
    tl = timeline({"gpm_gpu_sm_util_pct": [50.0] * 4})
    assert gpu_busy(tl, [SliceShare("main", "mps", 0.5)], None)["value"] is None


def test_window_is_the_timed_phase_and_shares_come_from_the_profile_table():
    f = Finished("main", started_at=10.0, ready_at=14.0, ended_at=20.0, exit_code=0,
                 log_path=None)
    assert main_window(f) == ((14.0, 20.0), "timed phase (ready line to exit)")
    assert main_window(Finished("main", 10.0, None, 20.0, 0, None))[0] == (10.0, 20.0)
    assert main_window(None) == (None, "")

    def part(kind, profile, gi=None):
        return Partition(kind, 0, "GPU-x", "GPU-x", profile, True, gi_id=gi)
    slot = SimpleNamespace(gpu_model="H100-SXM5-80GB", main=part("mig", "1g.10gb", 9),
                           background=(part("mig", "3g.40gb", 2), part("mig", "1g.10gb", 10)))
    shares = slot_shares(slot, ["main", "bg1-bert"])  # the second background runs nothing
    assert [(s.label, s.kind, s.gi_id) for s in shares] == [("main", "mig", 9),
                                                           ("bg1-bert", "mig", 2)]
    assert shares[0].sm_fraction == pytest.approx(H100_1G)
    assert shares[1].sm_fraction == pytest.approx(60 / 132)
    unknown = SimpleNamespace(gpu_model="no-such-gpu", main=part("mps", "1g.10gb"), background=())
    assert slot_shares(unknown, ["main"])[0].sm_fraction is None
