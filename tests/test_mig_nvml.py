"""The Nvml wrapper on the simulator, and how a backend is chosen."""
from __future__ import annotations

import os
import re

import pynvml
import pytest

from pytest_mig.errors import ConfigError, GpuError, LayoutError
from pytest_mig.gpu import backend
from pytest_mig.gpu.backend import open_backend, open_simulated
from pytest_mig.gpu.nvml import Nvml, NvmlCallError
from pytest_mig.gpu.sim.simulator import SimulatedNvml
from pytest_mig.gpu.topology import GpuInfo, MigInstance, Topology

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture
def nvml(tmp_path):
    n = Nvml(SimulatedNvml(tmp_path / "gpu.json", layout={"1g.10gb": 7}, clock=lambda: 0.0))
    yield n
    n.close()


def test_topology_of_the_default_simulated_gpu(tmp_path):
    n = open_backend("simulated", tmp_path / "gpu.json")
    topo = n.topology()
    assert topo.backend == "simulated" and topo.simulated
    assert topo.describe() == (
        "GPU backend: SIMULATED NVML (no hardware) - 1 x A100-SXM4-80GB, MIG enabled, layout "
        f"7 x 1g.10gb [simulator state {tmp_path / 'gpu.json'}]")
    (gpu,) = topo.gpus
    assert (gpu.index, gpu.name, gpu.model_key, gpu.pci_device_id) == (
        0, "NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", 0x20B210DE)
    assert (gpu.memory_total, gpu.mig_current, gpu.mig_pending) == (85899345920, True, True)
    insts = topo.instances[0]
    assert [(i.gi_id, i.ci_id, i.profile, i.placement_start, i.placement_size) for i in insts] == [
        (7 + k, 0, "1g.10gb", k, 1) for k in range(7)]
    assert all(i.uuid.startswith("MIG-") and i.memory_bytes == 9728 << 20 for i in insts)
    assert len({i.uuid for i in insts}) == 7
    assert (topo.driver, topo.nvml_version) == ("580.159.04", "13.580.159.04")


def test_describe_never_passes_a_real_run_for_simulated_or_back():
    gpu = GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-x", "H100-SXM5-80GB", 0x233010DE, 1, False, False)
    real = Topology("nvml", "580.159.04", "13.580.159.04", [gpu], {0: []})
    assert real.describe() == ("GPU backend: real NVML driver 580.159.04 (NVML 13.580.159.04) - "
                               "1 x H100-SXM5-80GB, MIG disabled")
    assert "SIMULATED" not in real.describe()
    mig = GpuInfo(1, "NVIDIA A100-SXM4-80GB", "GPU-y", None, 0x1, 1, True, True)
    insts = [MigInstance(1, 2, 0, "3g.40gb", 4, 4, "MIG-a", 1),
             *[MigInstance(1, 7 + k, 0, "1g.10gb", k, 1, f"MIG-{k}", 1) for k in range(4)]]
    two = Topology("simulated", "d", "n", [gpu, mig], {0: [], 1: insts}, state_path="/s.json")
    assert two.describe().splitlines() == [
        "GPU backend: SIMULATED NVML (no hardware) - 2 GPUs [simulator state /s.json]",
        "  GPU 0: H100-SXM5-80GB, MIG disabled",
        "  GPU 1: NVIDIA A100-SXM4-80GB, MIG enabled, layout 3g.40gb + 4 x 1g.10gb"]


@pytest.mark.parametrize("history_ids", [False, True], ids=["placement-ids", "history-ids"])
def test_create_and_destroy_through_the_wrapper(tmp_path, history_ids):
    n = open_simulated(tmp_path / "gpu.json", sim_layout="mig-empty")
    n.api.set_faults(history_ids=history_ids)
    assert n.instances(0) == []
    gi = n.create_gpu_instance(0, "3g.40gb", start=4)
    ci, uuid = n.create_compute_instance(0, gi)
    assert uuid.startswith("MIG-")
    small = n.create_gpu_instance(0, "1g.10gb")
    assert small != gi
    (a, b) = n.instances(0)
    assert (a.gi_id, a.ci_id, a.uuid, a.placement_start) == (small, None, None, 0)
    assert (b.gi_id, b.ci_id, b.uuid, b.placement_start) == (gi, ci, uuid, 4)
    remaining = {p.name: p.remaining for p in n.gi_profiles(0)}
    assert remaining == {"1g.10gb": 3, "2g.20gb": 1, "3g.40gb": 0, "4g.40gb": 0, "7g.80gb": 0,
                         "1g.10gb+me": 1, "1g.20gb": 1}
    with pytest.raises(LayoutError, match="3g.40gb cannot start at memory slice 2 on GPU 0; "
                                          "allowed starts: 0, 4"):
        n.create_gpu_instance(0, "3g.40gb", start=2)
    with pytest.raises(LayoutError, match=r"no MIG profile '3g\.40g' \(did you mean '3g\.40gb'\?\)"):
        n.create_gpu_instance(0, "3g.40g")
    with pytest.raises(NvmlCallError, match=r"INSUFFICIENT_RESOURCES \(simulated NVML\); no room "
                                            r"at memory slice 0: GPU 0 \(NVIDIA A100-SXM4-80GB\) "
                                            r"already has 3g.40gb \+ 1g.10gb") as err:
        n.create_gpu_instance(0, "3g.40gb", start=0)
    assert err.value.code == pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES
    with pytest.raises(NvmlCallError, match=r"it has compute instances \[0\]; stop the processes"):
        n.destroy_gpu_instance(0, gi)
    pid = n.api.register_process(uuid, used_memory=5 << 20)
    assert [(p.pid, p.used_memory, p.gi_id, p.ci_id) for p in n.processes_on(0, gi)] == [
        (pid, 5 << 20, gi, ci)]
    assert n.processes_on(0, small) == []
    assert n.mig_memory_used(uuid) == 5 << 20
    with pytest.raises(NvmlCallError, match=rf"processes \[{pid}\] still run on it"):
        n.destroy_compute_instance(0, gi, ci)
    with pytest.raises(NvmlCallError, match=rf"processes \[{pid}\] run on it and it has compute"):
        n.destroy_gpu_instance(0, gi)
    n.api.unregister_process(pid)
    n.destroy_compute_instance(0, gi, ci)
    n.destroy_gpu_instance(0, gi)
    n.destroy_gpu_instance(0, small)
    assert n.instances(0) == []
    with pytest.raises(NvmlCallError, match=f"GPU 0 has no GPU instance {small}"):
        n.destroy_gpu_instance(0, small)
    with pytest.raises(NvmlCallError, match="no such MIG device"):
        n.mig_memory_used(uuid)


def test_mig_disabled_error_says_how_to_enable_it(tmp_path):
    n = Nvml(SimulatedNvml(tmp_path / "gpu.json", mig_enabled=False))
    with pytest.raises(GpuError) as err:
        n.create_gpu_instance(0, "1g.10gb")
    assert str(err.value) == (
        "MIG mode is disabled on GPU 0 (NVIDIA A100-SXM4-80GB); enable it with: sudo nvidia-smi "
        "-i 0 -mig 1 (pytest-mig never changes MIG mode itself)")
    assert n.topology().describe().startswith(
        "GPU backend: SIMULATED NVML (no hardware) - 1 x A100-SXM4-80GB, MIG disabled [")


def test_no_permission_and_lost_gpu_become_gpu_errors(nvml):
    gi_id = nvml.instances(0)[0].gi_id
    nvml.api.configure(caller="user")
    with pytest.raises(NvmlCallError, match="NVML answers this MIG query only to a privileged "
                                            "user: run as root or grant the mig-config") as err:
        nvml.destroy_compute_instance(0, gi_id, 0)  # the by-id lookup is a privileged read
    assert err.value.code == pynvml.NVML_ERROR_NO_PERMISSION
    assert "creating or destroying" not in str(err.value)
    nvml.api.configure(caller="mig-config")
    nvml.api.inject_failure("nvmlComputeInstanceDestroy", "NO_PERMISSION")
    with pytest.raises(NvmlCallError, match="creating or destroying MIG instances needs root or "
                                            "the mig-config capability: run as root or grant"):
        nvml.destroy_compute_instance(0, gi_id, 0)
    nvml.api.inject_failure("nvmlDeviceGetCount", "GPU_IS_LOST")
    with pytest.raises(NvmlCallError, match="cannot count GPUs: nvmlDeviceGetCount failed with "
                                            "NVML_ERROR_GPU_IS_LOST .* fell off the bus"):
        nvml.gpus()
    assert len(nvml.gpus()) == 1


def test_sample_metrics_are_labelled_simulated(nvml):
    m = nvml.sample_metrics(0)
    assert (m.util_pct, m.mem_used, m.mem_total, m.power_w, m.sm_clock_mhz, m.temp_c, m.simulated) == (
        None, 0, 85899345920, 60.0, 210, 32, True)
    uuid = nvml.instances(0)[0].uuid
    nvml.api.register_process(uuid, used_memory=1 << 30)
    m = nvml.sample_metrics(0)
    assert (m.mem_used, m.power_w, m.sm_clock_mhz, m.temp_c) == (1 << 30, 102.5, 1410, 37)


def test_auto_falls_back_to_the_simulator_without_a_driver(tmp_path, monkeypatch):
    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(backend.pynvml, "nvmlInit", no_library)
    n = open_backend("auto", tmp_path / "gpu.json", sim_model="H100-SXM5-80GB", sim_gpus=2)
    assert n.backend == "simulated" and n.simulated
    assert n.topology().describe().startswith(
        "GPU backend: SIMULATED NVML (no hardware) - 2 x H100-SXM5-80GB, MIG enabled, layout 7 x 1g.10gb")
    with pytest.raises(GpuError, match="--mig-backend=nvml: the NVIDIA driver did not start "
                                       r"\(nvmlInit: NVML_ERROR_LIBRARY_NOT_FOUND\).*"
                                       "--mig-backend=simulated"):
        open_backend("nvml", tmp_path / "other.json")


def test_auto_does_not_hide_a_broken_driver(tmp_path, monkeypatch):
    def mismatch():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)

    monkeypatch.setattr(backend.pynvml, "nvmlInit", mismatch)
    with pytest.raises(GpuError, match="LIB_RM_VERSION_MISMATCH"):
        open_backend("auto", tmp_path / "gpu.json")
    with pytest.raises(ConfigError, match="choose one of auto, nvml, simulated"):
        open_backend("cuda", tmp_path / "gpu.json")


def test_auto_on_this_machine(tmp_path):
    """Here (nvidia-ml-py installed, no driver) auto must simulate; with a driver it must not."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        has_driver = False
    else:
        has_driver = True
        pynvml.nvmlShutdown()
    n = open_backend("auto", tmp_path / "gpu.json")
    try:
        assert n.backend == ("nvml" if has_driver else "simulated")
        head = n.topology().describe()
        assert bool(re.match(r"GPU backend: SIMULATED NVML \(no hardware\)", head)) != has_driver
    finally:
        n.close()


def test_simulated_layout_choices(tmp_path):
    spec = f"{DATA}/mig-parted/config.yaml:all-balanced"
    n = open_simulated(tmp_path / "a.json", sim_model="A100-SXM4-40GB", sim_layout=spec)
    # 3g.20gb at 0 would leave one 1g slot (1g never starts at 7): the planner moves it to 4
    assert [(i.profile, i.placement_start, i.gi_id) for i in n.instances(0)] == [
        ("2g.10gb", 0, 3), ("1g.5gb", 2, 9), ("1g.5gb", 3, 10), ("3g.20gb", 4, 2)]
    assert "layout 3g.20gb + 2g.10gb + 2 x 1g.5gb" in n.topology().describe()
    n = open_simulated(tmp_path / "b.json", sim_model="A30-24GB", sim_layout={"2g.12gb": 1, "1g.6gb": 2})
    assert [(i.profile, i.placement_start, i.gi_id) for i in n.instances(0)] == [
        ("2g.12gb", 0, 1), ("1g.6gb", 2, 5), ("1g.6gb", 3, 6)]
    with pytest.raises(LayoutError, match="unknown MIG layout 'hetero-1G'"):
        open_simulated(tmp_path / "c.json", sim_layout="hetero-1G")
