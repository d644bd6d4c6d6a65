"""The GPU metric sampler: CSV written as it samples, n/a where NVML has no value, simulated
values labelled, phases marked live, errors recorded once, the chart drawn at stop."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_mig.errors import GpuError
from pytest_mig.gpu.topology import GpuMetrics
from pytest_mig.report.timeline import CSV_NAME, MetricsSampler, case_timeline, read_timeline
from pngread import has_color_near, read_png

MIB = 1024 * 1024


class FakeNvml:
    """Measured-looking values, fixed, so the CSV can be checked cell by cell."""

    simulated = False

    def __init__(self, fail_mig: str | None = None, fail_gpu: bool = False) -> None:
        self.fail_mig, self.fail_gpu, self.calls = fail_mig, fail_gpu, 0

    def sample_metrics(self, index: int) -> GpuMetrics:
        self.calls += 1
        if self.fail_gpu:
            raise GpuError("cannot sample GPU 0: telemetry failed with NVML_ERROR_GPU_IS_LOST")
        return GpuMetrics(util_pct=None, mem_used=2048 * MIB, mem_total=81920 * MIB,
                          power_w=312.5, sm_clock_mhz=1980, temp_c=61, simulated=False)

    def mig_memory_used(self, uuid: str) -> int:
        if uuid == self.fail_mig:
            raise GpuError(f"cannot read memory use of {uuid}: no such MIG device")
        return {"MIG-a": 1024 * MIB, "MIG-b": 512 * MIB}[uuid]


def until(cond, timeout: float = 10.0) -> bool:
    """Poll instead of fixed sleeps: the CI host may be busy."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def rows(path: Path) -> list[list[str]]:
    lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
    return [x.split(",") for x in lines]


def test_csv_columns_values_and_na_cells(tmp_path: Path):
    s = MetricsSampler(FakeNvml(), 0, {"main": "MIG-a", "bg1-bert": "MIG-b"}, 0.02,
                       tmp_path / CSV_NAME, gpu_label="H100-SXM5-80GB").start()
    assert until(lambda: s.samples >= 4)
    s.stop()
    text = (tmp_path / CSV_NAME).read_text()
    head = text.splitlines()[:7]
    assert head[:5] == ["# pytest-mig GPU metric timeline", "# source: measured (real NVML)",
                        "# gpu: 0 H100-SXM5-80GB", "# mig_devices: main=MIG-a, bg1-bert=MIG-b",
                        "# interval_s: 0.02"]
    assert "NVML reports no utilisation for MIG devices" in head[6]
    table = rows(tmp_path / CSV_NAME)
    assert table[0] == ["time_unix", "t_s", "source", "gpu_util_pct", "gpu_mem_used_mib",
                        "gpu_mem_total_mib", "power_w", "sm_clock_mhz", "temp_c",
                        "mig_main_mem_used_mib", "mig_main_util_pct",
                        "mig_bg1-bert_mem_used_mib", "mig_bg1-bert_util_pct"]
    assert len(table) - 1 == s.samples >= 4
    assert {tuple(r[2:]) for r in table[1:]} == {
        ("measured", "n/a", "2048.0", "81920.0", "312.5", "1980", "61", "1024.0", "n/a",
         "512.0", "n/a")}
    times = [float(r[1]) for r in table[1:]]
    assert times == sorted(times) and times[0] == 0.0
    tl = read_timeline(tmp_path / CSV_NAME)
    assert tl.mig_labels() == ["main", "bg1-bert"] and not tl.simulated
    assert tl.series["gpu_util_pct"] == [None] * len(tl.t)
    assert tl.series["mig_bg1-bert_mem_used_mib"][0] == 512.0


def test_rows_are_on_disk_while_sampling(tmp_path: Path):
    s = MetricsSampler(FakeNvml(), 0, [], 0.02, tmp_path / CSV_NAME).start()
    try:
        # header + samples, before stop()
        assert until(lambda: len(rows(tmp_path / CSV_NAME)) >= 4)
    finally:
        s.stop()


def test_phases_marked_live_and_at_stop(tmp_path: Path):
    phases: dict[str, float] = {}
    s = MetricsSampler(FakeNvml(), 0, [], 0.02, tmp_path / CSV_NAME, phases=phases).start()
    phases["backgrounds_ready"] = time.time()
    assert until(lambda: "backgrounds_ready" in s.marks)  # by the thread, not at stop
    s.stop({"main_start": s._t0 + 0.05, "main_end": s._t0 + 0.08})
    tl = read_timeline(tmp_path / CSV_NAME)
    assert set(tl.phases) == {"backgrounds_ready", "main_start", "main_end"}
    assert tl.phases["main_start"] == pytest.approx(0.05, abs=0.002)
    assert tl.phases["main_end"] == pytest.approx(0.08, abs=0.002)
    png = read_png(tmp_path / "timeline.png")
    assert png.width == 1000 and has_color_near(png.colors, (30, 90, 220))  # main_start marker


def test_mig_read_error_is_na_and_recorded_once(tmp_path: Path):
    s = MetricsSampler(FakeNvml(fail_mig="MIG-b"), 0, {"a": "MIG-a", "b": "MIG-b"}, 0.02,
                       tmp_path / CSV_NAME).start()
    assert until(lambda: s.samples >= 4)
    s.stop()
    text = (tmp_path / CSV_NAME).read_text()
    assert text.count("# error: b MIG-b: cannot read memory use of MIG-b: no such MIG device") == 1
    assert {r[11] for r in rows(tmp_path / CSV_NAME)[1:]} == {"n/a"}
    assert {r[9] for r in rows(tmp_path / CSV_NAME)[1:]} == {"1024.0"}


def test_gpu_read_error_writes_no_row_and_keeps_trying(tmp_path: Path):
    nvml = FakeNvml(fail_gpu=True)
    s = MetricsSampler(nvml, 0, [], 0.02, tmp_path / CSV_NAME).start()
    assert until(lambda: nvml.calls >= 4)
    s.stop()
    assert len(rows(tmp_path / CSV_NAME)) == 1 and s.samples == 0 and nvml.calls >= 4
    assert (tmp_path / CSV_NAME).read_text().count("# error: GPU 0: cannot sample GPU 0") == 1
    assert read_png(tmp_path / "timeline.png").height > 0


def test_progress_reports_main_elapsed_against_expected(tmp_path: Path):
    said: list[str] = []
    phases = {"main_start": time.time() - 3.0}
    s = MetricsSampler(FakeNvml(), 0, [], 0.02, tmp_path / CSV_NAME, phases=phases,
                       progress=said.append, expected_main_s=40, progress_every_s=0.05).start()
    assert until(lambda: len(said) >= 2)
    phases["main_end"] = time.time()
    assert until(lambda: "main_end" in s.marks)
    count = len(said)
    time.sleep(0.15)
    s.stop()
    assert said[0] == "main running 3 s / expected 40 s"
    assert all(x.startswith("main running ") and x.endswith(" s / expected 40 s") for x in said)
    assert len(said) == count  # quiet once the main has ended


def test_progress_uses_the_mains_own_plan_once_written(tmp_path: Path):
    said: list[str] = []
    phases = {"main_start": time.time() - 3.0}
    plan = tmp_path / "harness_path.json"
    s = MetricsSampler(FakeNvml(), 0, [], 0.02, tmp_path / CSV_NAME, phases=phases,
                       progress=said.append, expected_main_s=40, progress_every_s=0.05,
                       plan_file=plan).start()
    assert until(lambda: len(said) >= 1)
    plan.write_text('{"ready_s": 4.5, "planned_test_s": 11.0, "planned_accuracy_s": null}')
    assert until(lambda: said[-1].endswith(" s / planned 16 s"))
    phases["main_end"] = time.time()
    s.stop()
    assert said[0].endswith(" s / expected 40 s")  # before the plan: the estimator's figure


def test_simulator_values_are_labelled_simulated(tmp_path: Path, monkeypatch):
    from pytest_mig.gpu.backend import open_simulated
    monkeypatch.setenv("PYTEST_MIG_RUN_ID", "timeline-test")
    nvml = open_simulated(tmp_path / "sim.json", "H100-SXM5-80GB")
    migs = [i.uuid for i in nvml.topology().instances[0]][:2]
    s = MetricsSampler(nvml, 0, migs, 0.05, tmp_path / CSV_NAME).start()
    assert until(lambda: s.samples >= 2)
    s.stop()
    tl = read_timeline(tmp_path / CSV_NAME)
    assert tl.simulated and tl.meta["source"].startswith("SIMULATED (values made up")
    table = rows(tmp_path / CSV_NAME)
    assert {r[2] for r in table[1:]} == {"simulated"}
    assert tl.mig_labels() == ["mig0", "mig1"]
    # MIG mode: NVML (and the simulator) give no GPU utilisation: never invented
    assert set(tl.series["gpu_util_pct"]) == {None}
    assert tl.series["gpu_mem_total_mib"][0] == 81559.0


def test_case_timeline_samples_the_slot_and_can_be_off(tmp_path: Path):
    part = lambda kind, dev: SimpleNamespace(kind=kind, device_id=dev)  # noqa: E731
    slot = SimpleNamespace(gpu_index=0, gpu_model="H100-SXM5-80GB", main=part("mig", "MIG-a"),
                           background=(part("mig", "MIG-b"), part("mps", "GPU-x")))
    case = SimpleNamespace(background=("bert", "dlrm"))
    out = SimpleNamespace(case=case, test_dir=tmp_path, phases={})
    session = SimpleNamespace(nvml=FakeNvml(), durations=SimpleNamespace(expect=lambda c: 12.0))
    with case_timeline(0.02, session, slot, out) as sampler:
        out.phases["main_start"] = time.time()
        assert until(lambda: sampler.samples >= 3)
        out.phases["main_end"] = time.time()
    assert sampler.migs == {"main": "MIG-a", "bg1-bert": "MIG-b"}  # the MPS share has no MIG
    assert sampler.expected_main_s == 12.0
    assert set(read_timeline(tmp_path / CSV_NAME).phases) == {"main_start", "main_end"}
    assert (tmp_path / "timeline.png").exists()
    assert out.gpu_busy["value"] is None and out.gpu_busy["source"] == "n/a: the main never ran"

    with case_timeline(0.0, session, slot, SimpleNamespace(**{**vars(out), "test_dir": tmp_path / "x"})) as none:
        assert none is None
    assert not (tmp_path / "x").exists()


def test_interval_must_be_positive(tmp_path: Path):
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        MetricsSampler(FakeNvml(), 0, [], 0, tmp_path / CSV_NAME)
