"""The simulator answers NVML's GPM calls on Hopper-or-later models (H100, H200) from the
activity of the workloads on each GPU instance, and NOT_SUPPORTED on an A100; a whole
pytest-mig run on a simulated H100 carries per-instance GPM means, on an A100 `n/a`."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pynvml
import pytest

from pytest_mig.gpu.sim import gpm as simgpm
from pytest_mig.gpu.gpm import GpmReader
from pytest_mig.gpu.sim.simulator import SimulatedNvml
from pytest_mig.orchestration.process import RUN_MARKER

SLEEPER = Path(__file__).resolve().parent / "programs" / "loadgen_sleeper.py"


def sim_with_two_instances(tmp_path: Path, model: str) -> tuple[SimulatedNvml, list[dict]]:
    profile = {"A100-SXM4-80GB": "1g.10gb", "H100-SXM5-80GB": "1g.10gb",
               "H200-141GB": "1g.18gb"}[model]
    sim = SimulatedNvml(tmp_path / f"{model}.json", model=model, layout={profile: 2})
    sim.nvmlInit()
    return sim, sim._file.read()["gpus"][0]["gpu_instances"]


def test_markers_are_the_ones_the_orchestration_sets():
    assert simgpm.RUN_MARKER == RUN_MARKER
    assert 'extra["PYTEST_MIG_SIMULATED_GPU"]' in (
        Path(__file__).resolve().parents[1] / "pytest_mig" / "orchestration"
        / "hetero_run.py").read_text()


@pytest.mark.parametrize("model", ["H100-SXM5-80GB", "H200-141GB"])
def test_busy_instance_reads_activity_idle_one_zero(tmp_path, model, monkeypatch):
    # Only the registered process counts: an in-process run earlier in this worker may have
    # left its run id in os.environ, and that run's live processes would count too.
    monkeypatch.delenv(RUN_MARKER, raising=False)
    sim, gis = sim_with_two_instances(tmp_path, model)
    sim.register_process(gis[0]["compute_instances"][0]["uuid"])
    reader = GpmReader(sim, 0, {"busy": gis[0]["id"], "idle": gis[1]["id"], "gpu": None})
    assert reader.supported, reader.note
    time.sleep(0.05)
    got = reader.read()
    assert set(got["busy"]) == {"sm_util_pct", "sm_occupancy_pct", "dram_bw_util_pct",
                                "tensor_util_pct"}
    assert 80 <= got["busy"]["sm_util_pct"] <= 96 and 10 <= got["busy"]["sm_occupancy_pct"] <= 18
    assert got["idle"] == dict.fromkeys(got["busy"], 0.0)
    assert got["gpu"]["sm_util_pct"] > 0  # the whole GPU holds the busy instance
    reader.close()
    assert sim._gpm_state()["buffers"] == {}  # every sample freed


def test_a100_says_not_supported(tmp_path):
    sim, gis = sim_with_two_instances(tmp_path, "A100-SXM4-80GB")
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 0
    with pytest.raises(pynvml.NVMLError) as err:
        sim.nvmlGpmMigSampleGet(handle, gis[0]["id"], sim.nvmlGpmSampleAlloc())
    assert err.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
    reader = GpmReader(sim, 0, {"main": gis[0]["id"]})
    assert reader.note == "n/a: GPM not supported by this GPU (Hopper or later)"


def test_live_workload_of_this_run_is_seen_others_are_not(tmp_path, monkeypatch):
    """A real child process with the run's marker on a MIG device makes it busy; the same
    child of another run does not; once it exits the instance reads idle again."""
    sim, gis = sim_with_two_instances(tmp_path, "H100-SXM5-80GB")
    monkeypatch.setenv(RUN_MARKER, "run-a")
    uuid = gis[1]["compute_instances"][0]["uuid"]

    def child(run_id: str) -> subprocess.Popen:
        env = {**os.environ, RUN_MARKER: run_id, "PYTEST_MIG_SIMULATED_GPU": "1",
               "CUDA_VISIBLE_DEVICES": uuid if uuid.startswith("MIG-") else f"MIG-{uuid}"}
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)

    def sm_util() -> float:  # both samples after the last change (the scan is cached briefly)
        time.sleep(simgpm.SCAN_EVERY_S * 2)
        reader = GpmReader(sim, 0, {"x": gis[1]["id"]})
        time.sleep(simgpm.SCAN_EVERY_S * 2)
        value = reader.read()["x"]["sm_util_pct"]
        reader.close()
        return value

    other = child("run-b")
    try:
        assert sm_util() == 0.0
        mine = child("run-a")
        try:
            assert sm_util() > 50
        finally:
            mine.kill()
            mine.wait()
        assert sm_util() == 0.0
    finally:
        other.kill()
        other.wait()


SUITE = textwrap.dedent("""
    suite: gpm
    class: datacenter
    benchmarks:
      resnet50: {{scenarios: [Offline], accuracy: 0.99}}
    gpus:
      {model}: {{profiles: [{profile}], slots: 2}}
    modes: [performance]
    background:
      set: [bert]
      lifetime: per-test
    run_profiles:
      smoke:
        min_duration_ms: 1500
        min_query_count: 1
        start_time_buffer_s: 20
        end_time_buffer_min_s: 0.2
        background_min_duration_ms: 3000
        sample_count: 16
    default_run_profile: smoke
""")

TEST = textwrap.dedent("""
    def test_case(mig_case, hetero):
        outcome = hetero.run(mig_case)
        assert outcome.valid, outcome.why_invalid()
""")


def test_whole_run_records_per_instance_gpm_means(pytester, model="H100-SXM5-80GB",
                                                 profile="1g.10gb"):
    """The A100 side (`n/a` in the record, no gpm_ columns) is asserted by the 7-slice run of
    tests/test_slices_e2e.py on the simulated A100."""
    pytest.importorskip("mlperf_loadgen")
    d = pytester.mkdir("suites")
    (d / "suite.yaml").write_text(SUITE.format(model=model, profile=profile))
    (d / "test_gpm.py").write_text(TEST)
    command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(SLEEPER))} "
               "--benchmark {benchmark} --log-dir {log_dir} --min-duration-ms {min_duration_ms}")
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "suites", "--mig-backend=simulated", f"--mig-sim-gpu={model}", "--harness=command",
        f"--mig-command={command}", f"--mig-reports={reports}", "--mig-sample-interval=0.1",
        "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (results,) = reports.glob("*/results.json")
    (test,) = json.loads(results.read_text())["tests"]
    timeline = (Path(test["paths"]["dir"]) / "timeline.csv").read_text()
    assert "# gpm: per slice: main, bg1-bert" in timeline
    assert "gpm_main_sm_util_pct" in timeline and "gpm_bg1-bert_tensor_util_pct" in timeline
    activity = test["activity"]
    assert set(activity) == {"main", "bg1-bert"}
    for label in ("main", "bg1-bert"):  # both instances ran a workload all through the main
        assert activity[label]["sm_util_pct"] > 50, activity
        assert 0 < activity[label]["sm_occupancy_pct"] < 30, activity


def h100_mini(mini):
    mini.edit_suite("A100-SXM4-80GB", "H100-SXM5-80GB")  # GPM: per MIG instance
    return ["-k", "resnet50", "--mig-sim-gpu=H100-SXM5-80GB", "--mig-min-duration=1500",
            "--mig-sample-interval=0.1"]


def test_gpu_busy_recorded_and_shown_in_the_case_line(mini):
    """Every slice's share busy during the main's timed phase; the default threshold (60 %)
    is met by the simulated instances, so no warning; the verbose word shows the figure."""
    r = mini.run({}, *h100_mini(mini), "-v")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*test_hetero?resnet50-Offline-1g.10gb-performance? "
                            "PASSED (GPU busy * %, simulated)*"])
    assert "host-bound" not in r.stdout.str()
    busy = mini.results()["tests"][0]["gpu_busy"]
    # made-up levels 82..96 %; an interval at the main's exit may count it half (it is gone
    # from /proc before the run sees it end)
    assert 0.6 < busy["value"] <= 0.96 and busy["simulated"] is True, busy
    assert busy["source"].startswith("SIMULATED: GPM SM activity of its GPU instance ")
    assert busy["window"].startswith("timed phase (ready line to exit), ")
    assert set(busy["backgrounds"]) == {"bg1-bert", "bg2-dlrm", "bg3-rnnt"}
    assert all(0.5 < b["value"] <= 0.96 for b in busy["backgrounds"].values()), busy


def test_below_min_busy_warns_and_require_busy_fails(mini):
    """--mig-min-busy above what the simulated slice reads: a host-bound warning naming the
    case, saying it is simulated; --mig-require-busy turns the passed case into a failure."""
    r = mini.run({}, *h100_mini(mini), "--mig-min-busy=99.5", "--mig-require-busy",
                 "--junitxml=j.xml", "-o", "junit_family=xunit1")  # per-case properties
    r.assert_outcomes(failed=1, warnings=1)
    r.stdout.fnmatch_lines([
        "*pytest-mig: resnet50-Offline-1g.10gb-performance: host-bound: GPU busy * % during the "
        "main; the figure measures the workload's host path, not the GPU (SIMULATED: GPM SM "
        "activity of its GPU instance * (MIG); --mig-min-busy=99.5) [[]SIMULATED GPU: made-up "
        "GPM values of the NVML simulator; this exercises the check, the workload was not "
        "measured[]]"])
    r.stdout.fnmatch_lines(["FAILED *resnet50-Offline-1g.10gb-performance* - "
                            "*--mig-require-busy: host-bound: GPU busy * %*"])
    rec = mini.results()["tests"][0]
    assert rec["outcome"] == "failed" and "--mig-require-busy: host-bound" in rec["message"]
    assert rec["result"]["valid"] is True  # the case itself was fine: only the gate failed it
    (warning,) = rec["warnings"]
    assert warning.startswith("host-bound: GPU busy ")
    xml = (mini.path / "j.xml").read_text()
    assert f'name="mig_gpu_busy" value="{rec["gpu_busy"]["value"]!r}"' in xml
    assert 'name="mig_gpu_busy_unit" value="fraction"' in xml
    assert 'name="mig_gpu_busy_source" value="SIMULATED: GPM SM activity of its GPU instance' in xml
    assert 'name="mig_warning" value="host-bound: GPU busy ' in xml
    page = (mini.run_dir() / "index.html").read_text()
    assert f'<td class="num busy" data-v="{rec["gpu_busy"]["value"]}" title="SIMULATED: ' in page


def test_utilisation_without_mig_counts_this_runs_live_workloads(tmp_path, monkeypatch):
    """The NVML-utilisation fallback of GPU busy on a simulated GPU without MIG: a live
    workload of this run on the GPU makes it busy, as it does GPM's readings."""
    sim = SimulatedNvml(tmp_path / "a100.json", model="A100-SXM4-80GB", mig_enabled=False)
    sim.nvmlInit()
    monkeypatch.setenv(RUN_MARKER, "run-u")
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    uuid = sim.nvmlDeviceGetUUID(handle)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid

    def util() -> int:
        time.sleep(simgpm.SCAN_EVERY_S * 2)
        return sim.nvmlDeviceGetUtilizationRates(handle).gpu

    assert util() == 0
    env = {**os.environ, RUN_MARKER: "run-u", "PYTEST_MIG_SIMULATED_GPU": "1",
           "CUDA_VISIBLE_DEVICES": uuid}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        deadline = time.monotonic() + 10
        while util() == 0 and time.monotonic() < deadline:
            pass
        assert 85 <= util() <= 100
    finally:
        child.kill()
        child.wait()
    assert util() == 0
