"""--mig-manage / --mig-layout in whole pytest sessions on the simulated GPU (pytester):
layouts created per case and removed at the end, grouped order, counted reconfigurations,
skips that say how to get a layout, refusals, MIG mode never changed."""
from __future__ import annotations

import json
import shutil
import textwrap

import pytest

# Sets the simulated GPU up before the run opens it (as an admin would have left it).
CONFTEST = textwrap.dedent("""
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        SimulatedNvml(s.run_dir / "simulated-gpu.json", model=s.settings.sim_gpu,
                      gpu_count=s.settings.sim_gpus, layout={layout!r}, mig_enabled={mig!r})
""")

IDS = ["resnet50-Offline-1g.10gb-performance", "resnet50-Offline-2g.20gb-performance",
       "bert-Offline-1g.10gb-performance", "bert-Offline-2g.20gb-performance"]


@pytest.fixture
def project(mini_project):
    return mini_project("layouts", module="layouts", flags=("--mig-main-startup=1.5", "-rA", "-s"))


def gpu_setup(project, layout: dict, mig: bool = True) -> None:
    project.pytester.makeconftest(CONFTEST.format(layout=layout, mig=mig))


def run(project, *extra: str):
    return project.run({}, *extra)


def gpu_state(project) -> dict:
    (gpu,) = project.gpu_state()["gpus"]
    return gpu


def layout_of(gpu: dict) -> list[tuple[int, int, int]]:
    return sorted((gi["profile_id"], gi["start"], len(gi["compute_instances"]))
                  for gi in gpu["gpu_instances"])


def test_manage_creates_layouts_in_grouped_order_and_removes_them(project):
    gpu_setup(project, {})
    r = run(project, "--mig-manage", "-v")
    r.assert_outcomes(passed=4)
    # Grouped by layout: both 1g cases, then both 2g cases (collected interleaved).
    r.stdout.fnmatch_lines([f"*test_case?{i}? PASSED*" for i in
                            (IDS[0], IDS[2], IDS[1], IDS[3])])
    r.stdout.fnmatch_lines([
        "*--mig-manage: MIG instances are created per case layout; only those this run "
        "created are destroyed at its end*",
        "*SLOT resnet50-Offline-1g.10gb-performance 1g.10gb 1g.10gb+1g.10gb",
        "*SLOT bert-Offline-2g.20gb-performance 2g.20gb 2g.20gb+2g.20gb",
        "pytest-mig: 2 MIG reconfiguration(s) (optimal: 2 distinct layouts)",
        "pytest-mig: destroyed the 3 MIG instance(s) this run created"])
    summary = json.loads((project.run_dir() / "mig-manage.json").read_text())
    assert (summary["reconfigurations"], summary["optimal"]) == (2, 2)
    assert summary["layouts"] == ["A100-SXM4-80GB: 3 x 1g.10gb", "A100-SXM4-80GB: 3 x 2g.20gb"]
    assert [(e["case"], e["reconfigured"]) for e in summary["events"]] == [
        (IDS[0], True), (IDS[2], False), (IDS[1], True), (IDS[3], False)]
    assert summary["events"][2]["destroyed"] == [
        f"GPU instance {7 + s} (1g.10gb at memory slice {s}) on GPU 0 "
        f"({gpu_state(project)['uuid']})" for s in (0, 1, 2)]
    assert len(summary["teardown"]["destroyed"]) == 3 and summary["teardown"]["refused"] == []
    assert gpu_state(project)["gpu_instances"] == []  # nothing of ours is left
    own = json.loads((project.run_dir() / "mig-ownership.json").read_text())
    assert own["instances"] == []


def test_without_manage_a_missing_layout_is_skipped_with_how_to_get_it(project):
    gpu_setup(project, {"1g.10gb": 7})
    r = run(project)
    r.assert_outcomes(passed=2, skipped=2)
    r.stdout.fnmatch_lines([
        "SKIPPED [[]2[]] *GPU 0 (A100-SXM4-80GB) has 7 x 1g.10gb; this case needs 3 x "
        "2g.20gb. Let pytest-mig create it for the run (and remove it at the end): pytest "
        "*suites* --mig-manage; or create it by hand: sudo nvidia-smi mig -i 0 -dci && sudo "
        "nvidia-smi mig -i 0 -dgi && sudo nvidia-smi mig -i 0 -cgi "
        "2g.20gb:0,2g.20gb:2,2g.20gb:4 -C"])
    assert "reconfiguration" not in r.stdout.str()
    assert not (project.run_dir() / "mig-manage.json").exists()
    assert len(gpu_state(project)["gpu_instances"]) == 7


def test_manage_refuses_to_destroy_instances_it_did_not_create(project):
    gpu_setup(project, {"1g.10gb": 7})
    r = run(project, "--mig-manage")
    r.assert_outcomes(passed=2, errors=2)
    r.stdout.fnmatch_lines([
        "*GpuError: cannot reach 3 x 2g.20gb on GPU 0 (A100-SXM4-80GB): it has 7 x 1g.10gb, "
        "and pytest-mig may not destroy these instances in the way: GPU instance 7 (1g.10gb "
        "at memory slice 0): not created by this run;*",
        "pytest-mig: 0 MIG reconfiguration(s) (optimal: 1 distinct layouts)"])
    gpu = gpu_state(project)
    assert layout_of(gpu) == [(19, s, 1) for s in range(7)]


def test_mig_disabled_is_reported_and_never_enabled(project):
    gpu_setup(project, {}, mig=False)
    r = run(project, "--mig-manage", "-k", "resnet50")
    r.assert_outcomes(skipped=2)
    r.stdout.fnmatch_lines([
        "pytest-mig: GPU 0 (A100-SXM4-80GB) has MIG mode disabled; pytest-mig never changes "
        "MIG mode. Enable it with: sudo nvidia-smi -i 0 -mig 1 (then reset the GPU with sudo "
        "nvidia-smi -i 0 -r, or reboot)",
        "pytest-mig: 0 MIG reconfiguration(s) (optimal: 0 distinct layouts)",
        "SKIPPED *has MIG mode disabled; pytest-mig never changes MIG mode. Enable it with: "
        "sudo nvidia-smi -i 0 -mig 1*"])
    gpu = gpu_state(project)
    assert (gpu["mig_current"], gpu["mig_pending"], gpu["gpu_instances"]) == (False, False, [])


def test_layout_file_is_applied_for_every_case(project):
    gpu_setup(project, {})
    (project.path / "mixed.yaml").write_text(textwrap.dedent("""
        version: v1
        mig-configs:
          mixed:
            - devices: all
              mig-enabled: true
              mig-devices: {"3g.40gb": 1, "1g.10gb": 2}
    """))
    r = run(project, "--mig-manage", "--mig-layout", "mixed.yaml:mixed", "-k", "1g")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines([
        "*SLOT resnet50-Offline-1g.10gb-performance 1g.10gb 3g.40gb+1g.10gb",
        "pytest-mig: 1 MIG reconfiguration(s) (optimal: 1 distinct layouts)"])
    summary = json.loads((project.run_dir() / "mig-manage.json").read_text())
    assert [c.split(" on GPU")[0] for c in summary["events"][0]["created"]] == [
        "GPU instance 1 (3g.40gb at memory slice 0)", "GPU instance 11 (1g.10gb at memory slice 4)",
        "GPU instance 12 (1g.10gb at memory slice 5)"]
    assert gpu_state(project)["gpu_instances"] == []


def test_layout_without_the_main_profile_skips_and_unknown_name_is_a_usage_error(
        project):
    gpu_setup(project, {})
    r = run(project, "--mig-layout", "hetero-1g", "-k", "resnet50 and 2g")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["SKIPPED *layout 'hetero-1g' (*pytest-mig.yaml) has no 2g.20gb "
                            "instance for the main of resnet50-Offline-2g.20gb-performance on "
                            "GPU 0 (it has 7 x 1g.10gb); add \"2g.20gb\" to its mig-devices"])
    r = run(project, "--mig-layout", "hetero-1h")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--mig-layout hetero-1h: unknown MIG layout 'hetero-1h' (did you "
                            "mean 'hetero-1g'?)*"])


def test_manage_under_xdist_merges_workers_and_tears_down_once(project):
    gpu_setup(project, {})
    r = run(project, "--mig-manage", "--mig-sim-gpus=2", "-n", "2")
    r.assert_outcomes(passed=4)
    summary = json.loads((project.run_dir() / "mig-manage.json").read_text())
    events = summary["events"]
    assert sorted(e["case"] for e in events) == sorted(IDS)
    assert {e["worker"] for e in events} == {"gw0", "gw1"}
    # Workers record the controller as owner: the run outlives any one worker.
    assert {e["owner_pid"] for e in events} == {summary["owner"]["pid"]}
    assert summary["optimal"] == 2
    assert summary["reconfigurations"] == sum(e["reconfigured"] for e in events) >= 2
    r.stdout.fnmatch_lines([f"pytest-mig: {summary['reconfigurations']} MIG "
                            "reconfiguration(s) (optimal: 2 distinct layouts)"])
    state = project.gpu_state()
    assert [g["gpu_instances"] for g in state["gpus"]] == [[], []]


# The same, with the GPU as real nodes show it: ids from history, MIG device index gaps,
# listings that lag, and the run's caller root, non-root with mig-config, or plain non-root.
HARD_CONFTEST = textwrap.dedent("""
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        sim = SimulatedNvml(s.run_dir / "simulated-gpu.json", model=s.settings.sim_gpu,
                            layout={layout!r})
        sim.set_faults(history_ids=True, index_gaps=True, stale_listing=3)
        sim.configure(caller={caller!r})
""")


def test_manage_on_a_hard_gpu_creates_and_removes_by_recorded_ids(project):
    """mig-config and the faults' other combinations: tests/test_mig_faults.py."""
    project.pytester.makeconftest(HARD_CONFTEST.format(layout={}, caller="root"))
    r = run(project, "--mig-manage", "-k", "resnet50 and 1g")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["pytest-mig: destroyed the 3 MIG instance(s) this run created"])
    created = json.loads((project.run_dir() / "mig-manage.json").read_text())["events"][0]
    assert [c.split(" (")[1].split(")")[0] for c in created["created"]] == [
        f"1g.10gb at memory slice {s}" for s in (0, 1, 2)]
    assert gpu_state(project)["gpu_instances"] == []


def test_non_root_run_is_told_the_fix_and_discovers_what_it_can(project):
    project.pytester.makeconftest(HARD_CONFTEST.format(layout={}, caller="user"))
    r = run(project, "--mig-manage", "-k", "resnet50 and 1g")
    r.assert_outcomes(errors=1)
    r.stdout.fnmatch_lines([
        "*GpuError: cannot manage MIG instances on GPU 0 (A100-SXM4-80GB): NVML refuses the "
        "GPU-instance queries and changes to this user (NVML_ERROR_NO_PERMISSION); run as "
        "root or grant the mig-config capability*"])
    assert "creating or destroying" not in r.stdout.str()
    assert gpu_state(project)["gpu_instances"] == []
    # read-only: an admin made the layout; the non-root run uses it and says what it missed
    shutil.rmtree(project.reports)
    project.pytester.makeconftest(HARD_CONFTEST.format(layout={"1g.10gb": 3}, caller="user"))
    r = run(project, "-k", "resnet50 and 1g")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines([
        "GPU backend: SIMULATED NVML (no hardware) - 1 x A100-SXM4-80GB, MIG enabled, layout "
        "3 x 1g.10gb *",
        "  GPU 0: could not read total memory (nvmlDeviceGetMemoryInfo: NVML_ERROR_NO_PERMISSION; "
        "the A100-SXM4-80GB table's figure is used) - run as root or grant the mig-config "
        "capability to read it",
        "  GPU 0: could not read GPU-instance placements (nvmlDeviceGetGpuInstances: "
        "NVML_ERROR_NO_PERMISSION; MIG devices listed without placements) - run as root or "
        "grant the mig-config capability to read it",
        "*SLOT resnet50-Offline-1g.10gb-performance 1g.10gb 1g.10gb+1g.10gb"])
    assert len(gpu_state(project)["gpu_instances"]) == 3
