"""NVML errors from the simulated GPU: the GPU lost mid-run and at a case's setup, and
INSUFFICIENT_RESOURCES when --mig-manage creates a layout. The error names the NVML call,
the code and the fix; what the run created is destroyed at its end; the next case runs."""
from __future__ import annotations

import json
import textwrap

import pytest

from .helpers import (BGS, FAULTY, FAULTY_DIR, HEALTHY, assert_clean,
                      assert_leases_free, assert_logs_kept, gpu_state)

# Fault injection from inside the run: the faulty case's setup arms a one-shot NVML error.
INJECT = textwrap.dedent("""
    import pytest
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    LAYOUT = {layout!r}

    def pytest_configure(config):
        if LAYOUT is not None:  # the GPU as an admin left it, before the run opens it
            s = config.stash[SESSION_KEY]
            s.ensure_run_dir()
            SimulatedNvml(s.run_dir / "simulated-gpu.json", layout=LAYOUT)

    @pytest.fixture(autouse=True)
    def _arm_fault(request, mig_session):
        if "resnet50" in request.node.name:
            mig_session.nvml.api.inject_failure({function!r}, {code!r})
""")


def arm(project, function: str, code: str, layout: dict | None = None) -> None:
    project.pytester.makeconftest(INJECT.format(function=function, code=code, layout=layout))


def test_gpu_lost_mid_run(project):
    r = project.run({"cases": {"resnet50": {"main": "gpu_lost"}}})
    r.assert_outcomes(failed=1, passed=1)
    r.stdout.fnmatch_lines(["*main resnet50 Offline exited with code 1; log: *main.log",
                            "*CUDA error: GPU is lost*"])
    r.stdout.fnmatch_lines([f"PASSED *test_hetero?{HEALTHY}?"])
    run_dir = project.run_dir()
    # The sampler hit the lost GPU: one error line naming the NVML code and the fix.
    timeline = (run_dir / FAULTY_DIR / "timeline.csv").read_text()
    (error,) = [line for line in timeline.splitlines() if line.startswith("# error: ")]
    assert "failed with NVML_ERROR_GPU_IS_LOST (simulated NVML); the GPU fell off the bus" in error
    assert_logs_kept(run_dir, FAULTY_DIR, ("main", *BGS))
    assert project.records()[FAULTY]["outcome"] == "failed"
    assert_clean(project)


def test_gpu_lost_at_a_cases_setup(project):
    arm(project, "nvmlDeviceGetCount", "GPU_IS_LOST")
    r = project.run({})
    r.assert_outcomes(errors=1, passed=1)
    r.stdout.fnmatch_lines([
        f"*ERROR at setup of test_hetero?{FAULTY}? *",
        "E * pytest_mig.gpu.nvml.NvmlCallError: cannot count GPUs: "
        "nvmlDeviceGetCount failed with NVML_ERROR_GPU_IS_LOST (simulated NVML); the GPU fell "
        "off the bus: check `nvidia-smi` and dmesg; it needs a reset or reboot"])
    r.stdout.fnmatch_lines([f"PASSED *test_hetero?{HEALTHY}?"])
    assert project.records()[HEALTHY]["outcome"] == "passed"
    assert_clean(project)


def test_a_setup_error_is_in_results_json(project):
    arm(project, "nvmlDeviceGetCount", "GPU_IS_LOST")
    project.run({})
    assert project.records()[FAULTY]["outcome"] == "error"


def test_a_setup_error_gets_a_record(project):
    arm(project, "nvmlDeviceGetCount", "GPU_IS_LOST")
    project.run({}).assert_outcomes(errors=1, passed=1)
    rec = project.records()[FAULTY]
    assert rec["outcome"] == "error" and rec["benchmark"] == "resnet50"
    assert "nvmlDeviceGetCount failed with NVML_ERROR_GPU_IS_LOST" in rec["message"]
    assert rec["paths"]["dir"] == str(project.run_dir() / FAULTY_DIR)


def manage_summary(project) -> dict:
    return json.loads((project.run_dir() / "mig-manage.json").read_text())


def assert_nothing_of_ours_left(project) -> None:
    assert project.wait_no_leftovers() == []
    run_dir = project.run_dir()
    assert_leases_free(run_dir)
    (gpu,) = gpu_state(run_dir)["gpus"]
    assert gpu["gpu_instances"] == []
    assert json.loads((run_dir / "mig-ownership.json").read_text())["instances"] == []


def test_insufficient_resources_at_gpu_instance_create(project):
    arm(project, "nvmlDeviceCreateGpuInstanceWithPlacement", "INSUFFICIENT_RESOURCES", layout={})
    r = project.run({}, "--mig-manage")
    r.assert_outcomes(errors=1, passed=1)
    r.stdout.fnmatch_lines([
        f"*ERROR at setup of test_hetero?{FAULTY}? *",
        "E * pytest_mig.gpu.nvml.NvmlCallError: cannot create a 1g.10gb GPU instance on GPU 0: "
        "nvmlDeviceCreateGpuInstance failed with "
        "NVML_ERROR_INSUFFICIENT_RESOURCES (simulated NVML); no room at memory slice 0*"])
    r.stdout.fnmatch_lines(["pytest-mig: destroyed the 4 MIG instance(s) this run created"])
    summary = manage_summary(project)
    assert [e["case"] for e in summary["events"]] == [HEALTHY]
    assert len(summary["events"][0]["created"]) == 4  # main + 3 backgrounds
    assert_nothing_of_ours_left(project)


def test_compute_instance_create_fails_after_its_gpu_instance(project):
    arm(project, "nvmlGpuInstanceCreateComputeInstance", "INSUFFICIENT_RESOURCES", layout={})
    r = project.run({}, "--mig-manage")
    r.assert_outcomes(errors=1, passed=1)
    r.stdout.fnmatch_lines([
        f"*ERROR at setup of test_hetero?{FAULTY}? *",
        "E * pytest_mig.gpu.nvml.NvmlCallError: cannot create a compute instance in GPU "
        "instance * of GPU 0: nvmlGpuInstanceCreateComputeInstance "
        "failed with NVML_ERROR_INSUFFICIENT_RESOURCES (simulated NVML)*"])
    # The GPU instance created before the failure was recorded at once; the next case left
    # it alone (no compute instance: not usable) and built its layout beside it; teardown
    # destroyed all five.
    r.stdout.fnmatch_lines(["pytest-mig: destroyed the 5 MIG instance(s) this run created"])
    (event,) = manage_summary(project)["events"]
    assert (event["case"], len(event["created"]), event["destroyed"]) == (HEALTHY, 4, [])
    assert len(manage_summary(project)["teardown"]["destroyed"]) == 5
    assert_nothing_of_ours_left(project)
