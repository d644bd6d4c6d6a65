"""The NVML simulator: pynvml's shapes and error codes, one state file shared by processes."""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pynvml
import pytest

import pytest_mig.io
from pytest_mig.errors import GpuError, LayoutError
from pytest_mig.gpu.sim.simulator import SimulatedNvml

ROOT = Path(__file__).resolve().parents[1]
P = pynvml


def open_sim(path: Path, **kw) -> SimulatedNvml:
    sim = SimulatedNvml(path, **kw)
    sim.nvmlInit()
    return sim


@pytest.fixture
def sim(tmp_path):
    """An A100-SXM4-80GB with MIG enabled and no instances."""
    return open_sim(tmp_path / "gpu.json")


def gi_list(sim, h, profile_id, size=7):
    count, buf = ctypes.c_uint(0), (P.c_nvmlGpuInstance_t * size)()
    sim.nvmlDeviceGetGpuInstances(h, profile_id, buf, ctypes.byref(count))
    return [sim.nvmlGpuInstanceGetInfo(buf[i]) for i in range(count.value)]


def place(start, size):
    return ctypes.byref(P.c_nvmlGpuInstancePlacement_t(start, size))


def test_calls_before_init_raise_uninitialized(tmp_path):
    sim = SimulatedNvml(tmp_path / "gpu.json")
    with pytest.raises(P.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
    sim.nvmlInit()
    assert sim.nvmlDeviceGetCount() == 1
    sim.nvmlShutdown()
    with pytest.raises(P.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()


def test_returns_pynvml_types_and_handles(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(h, P.c_nvmlDevice_t)
    assert isinstance(sim.nvmlDeviceGetMemoryInfo(h), P.c_nvmlMemory_t)
    assert isinstance(sim.nvmlDeviceGetPciInfo(h), P.nvmlPciInfo_t)
    gi = sim.nvmlDeviceCreateGpuInstance(h, 19)
    assert isinstance(gi, P.c_nvmlGpuInstance_t)
    info = sim.nvmlGpuInstanceGetInfo(gi)
    assert isinstance(info, P.c_nvmlGpuInstanceInfo_t)
    assert (info.id, info.profileId, info.placement.start, info.placement.size) == (7, 19, 0, 1)
    ci = sim.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    assert isinstance(ci, P.c_nvmlComputeInstance_t)
    cinfo = sim.nvmlComputeInstanceGetInfo(ci)
    assert isinstance(cinfo, P.c_nvmlComputeInstanceInfo_t)
    assert (cinfo.id, cinfo.profileId, cinfo.placement.start, cinfo.placement.size) == (0, 0, 0, 1)
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert sim.nvmlDeviceIsMigDeviceHandle(mig).value == 1
    assert sim.nvmlDeviceIsMigDeviceHandle(h).value == 0
    assert (sim.nvmlDeviceGetGpuInstanceId(mig), sim.nvmlDeviceGetComputeInstanceId(mig)) == (7, 0)
    assert sim.nvmlDeviceGetName(mig) == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    assert sim.nvmlDeviceGetMemoryInfo(mig).total == 9728 * 1024 * 1024
    parent = sim.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
    assert sim.nvmlDeviceGetUUID(parent) == sim.nvmlDeviceGetUUID(h)
    with pytest.raises(P.NVMLError_NotFound):
        sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 1)
    with pytest.raises(P.NVMLError_NotFound):
        sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 7)
    with pytest.raises(P.NVMLError_InvalidArgument):
        sim.nvmlDeviceGetName(None)
    assert sim.NVML_ERROR_IN_USE == P.NVML_ERROR_IN_USE  # constants are pynvml's


def test_uuids_are_deterministic_and_shaped_like_nvml(tmp_path):
    a = open_sim(tmp_path / "a.json", layout={"1g.10gb": 2})
    b = open_sim(tmp_path / "b.json", layout={"1g.10gb": 2})
    c = open_sim(tmp_path / "c.json", layout={"1g.10gb": 2}, seed=1)
    uuids = [[s.nvmlDeviceGetUUID(s.nvmlDeviceGetMigDeviceHandleByIndex(
        s.nvmlDeviceGetHandleByIndex(0), k)) for k in range(2)] for s in (a, b, c)]
    assert uuids[0] == uuids[1] != uuids[2]
    shape = r"MIG-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(shape, u) for u in uuids[0])
    assert re.fullmatch(r"GPU-[0-9a-f-]{36}", a.nvmlDeviceGetUUID(a.nvmlDeviceGetHandleByIndex(0)))


def test_layout_is_pre_applied_on_lowest_starts(tmp_path):
    sim = open_sim(tmp_path / "gpu.json", layout={"3g.40gb": 1, "1g.10gb": 4}, gpu_count=2)
    for index in (0, 1):
        h = sim.nvmlDeviceGetHandleByIndex(index)
        assert [(i.id, i.placement.start) for i in gi_list(sim, h, 9)] == [(2, 4)]
        assert [(i.id, i.placement.start) for i in gi_list(sim, h, 19)] == [
            (7, 0), (8, 1), (9, 2), (10, 3)]
        assert sim.nvmlDeviceGetMaxMigDeviceCount(h) == 7
        assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 0
    with pytest.raises(LayoutError, match="needs 8 of 7 compute slices"):
        SimulatedNvml(tmp_path / "bad.json", layout={"3g.40gb": 1, "1g.10gb": 5})
    with pytest.raises(LayoutError, match="MIG disabled"):
        SimulatedNvml(tmp_path / "off.json", layout={"1g.10gb": 1}, mig_enabled=False)
    assert not (tmp_path / "bad.json").exists()


def test_existing_state_is_used_as_is(tmp_path):
    open_sim(tmp_path / "gpu.json", model="A30-24GB", layout={"1g.6gb": 4})
    again = open_sim(tmp_path / "gpu.json", model="H100-SXM5-80GB", gpu_count=3, layout=None)
    assert again.nvmlDeviceGetCount() == 1
    h = again.nvmlDeviceGetHandleByIndex(0)
    assert again.nvmlDeviceGetName(h) == "NVIDIA A30"
    assert [i.id for i in gi_list(again, h, 14)] == [3, 4, 5, 6]


def test_conflicts_and_full_gpu_are_insufficient_resources(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, place(3, 1))
    with pytest.raises(P.NVMLError_InsufficientResources):  # 3g at 0 covers slices 0-3
        sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, place(0, 4))
    with pytest.raises(P.NVMLError_InvalidArgument):  # 1g.20gb never starts at 1
        sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 15, place(1, 2))
    assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 9) == 1
    gi = sim.nvmlDeviceCreateGpuInstance(h, 9)
    assert sim.nvmlGpuInstanceGetInfo(gi).placement.start == 4
    for _ in range(3):
        sim.nvmlDeviceCreateGpuInstance(h, 19)
    assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 0
    with pytest.raises(P.NVMLError_InsufficientResources):
        sim.nvmlDeviceCreateGpuInstance(h, 19)
    with pytest.raises(P.NVMLError_InsufficientResources):
        sim.nvmlDeviceCreateGpuInstance(h, 20)
    me_sim = open_sim(sim.state_path.with_name("me.json"))
    hm = me_sim.nvmlDeviceGetHandleByIndex(0)
    me_sim.nvmlDeviceCreateGpuInstance(hm, 20)
    with pytest.raises(P.NVMLError_InsufficientResources):  # only one +me instance
        me_sim.nvmlDeviceCreateGpuInstance(hm, 20)


def test_compute_slices_limit_creation(tmp_path):
    table = textwrap.dedent("""\
        source: test table
        model: TINY
        nvml_name: NVIDIA Tiny
        pci_device_id: "0x00011234"
        memory_total: 1073741824
        total_sms: 8
        compute_slices: 2
        memory_slices: 4
        profiles:
          - {name: 1g.1gb, profile_const: 0, id: 19, instance_count: 4, memory_mb: 256,
             sm_count: 4, slice_count: 1, ce: 1, dec: 0, enc: 0, jpeg: 0, ofa: 0,
             placements: {starts: [0, 1, 2, 3], size: 1}}
        """)
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "TINY.yaml").write_text(table)
    sim = open_sim(tmp_path / "gpu.json", model="TINY", gpu_dir=tmp_path / "gpus")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    sim.nvmlDeviceCreateGpuInstance(h, 19)
    sim.nvmlDeviceCreateGpuInstance(h, 19)
    assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 0  # memory free, compute not
    with pytest.raises(P.NVMLError_InsufficientResources):
        sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, place(3, 1))


def test_mig_disabled_refuses_instances_but_reads_profiles(tmp_path):
    sim = open_sim(tmp_path / "gpu.json", mig_enabled=False)
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlDeviceGetMigMode(h) == [0, 0]
    assert sim.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    assert sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0).id == 19
    assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 7
    for call in (lambda: sim.nvmlDeviceCreateGpuInstance(h, 19),
                 lambda: sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, place(0, 1))):
        with pytest.raises(P.NVMLError_NotSupported):
            call()
    assert gi_list(sim, h, 19) == []
    with pytest.raises(P.NVMLError_NotFound):
        sim.nvmlDeviceGetGpuInstanceById(h, 7)
    with pytest.raises(P.NVMLError_NotFound):
        sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    sim.set_mig_mode(0, True)
    assert sim.nvmlDeviceGetMigMode(h) == [1, 1]
    assert sim.nvmlGpuInstanceGetInfo(sim.nvmlDeviceCreateGpuInstance(h, 19)).id == 7


def test_destroy_in_use_with_compute_instance_or_process(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = sim.nvmlDeviceCreateGpuInstance(h, 14)
    ci = sim.nvmlGpuInstanceCreateComputeInstance(gi, 1)
    with pytest.raises(P.NVMLError_InUse):
        sim.nvmlGpuInstanceDestroy(gi)
    uuid = sim.nvmlDeviceGetUUID(sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0))
    pid = sim.register_process(uuid, used_memory=3 << 30)
    with pytest.raises(P.NVMLError_InUse):
        sim.nvmlComputeInstanceDestroy(ci)
    sim.unregister_process(pid)
    assert sim.nvmlComputeInstanceDestroy(ci) == P.NVML_SUCCESS
    assert sim.nvmlGpuInstanceDestroy(gi) == P.NVML_SUCCESS
    with pytest.raises(P.NVMLError_InvalidArgument):  # the handle is stale now
        sim.nvmlGpuInstanceGetInfo(gi)
    assert gi_list(sim, h, 14) == []


def test_compute_instance_profiles_and_placement(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = sim.nvmlDeviceCreateGpuInstance(h, 9)  # 3g.40gb
    full = sim.nvmlGpuInstanceGetComputeInstanceProfileInfo(
        gi, P.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE, 0)
    assert (full.id, full.sliceCount, full.instanceCount, full.multiprocessorCount, full.name) == (
        2, 3, 1, 42, "MIG 3g.40gb")
    one = sim.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 0, 0, version=1)
    assert isinstance(one, P.c_nvmlComputeInstanceProfileInfo_t)
    assert (one.sliceCount, one.instanceCount, one.multiprocessorCount) == (1, 3, 14)
    with pytest.raises(P.NVMLError_NotSupported):
        sim.nvmlGpuInstanceGetComputeInstanceProfileInfo(
            gi, P.NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE, 0)
    ids = [sim.nvmlComputeInstanceGetInfo(sim.nvmlGpuInstanceCreateComputeInstance(gi, 0)).id
           for _ in range(3)]
    assert ids == [0, 1, 2]
    with pytest.raises(P.NVMLError_InsufficientResources):
        sim.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 2)
    assert sim.nvmlDeviceGetName(mig) == "NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb"
    count, buf = ctypes.c_uint(0), (P.c_nvmlComputeInstance_t * 3)()
    sim.nvmlGpuInstanceGetComputeInstances(gi, 0, buf, ctypes.byref(count))
    assert count.value == 3


PRIVILEGED_READS = [
    ("nvmlDeviceGetGpuInstanceRemainingCapacity", lambda s, h, gi: s.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19)),
    ("nvmlDeviceGetGpuInstancePossiblePlacements_v2", lambda s, h, gi: s.nvmlDeviceGetGpuInstancePossiblePlacements(
        h, 19, None, ctypes.byref(ctypes.c_uint(0)))),
    ("nvmlDeviceGetGpuInstances", lambda s, h, gi: gi_list(s, h, 19)),
    ("nvmlDeviceGetGpuInstanceById", lambda s, h, gi: s.nvmlDeviceGetGpuInstanceById(h, s.nvmlGpuInstanceGetInfo(gi).id)),
    ("nvmlGpuInstanceGetComputeInstances", lambda s, h, gi: s.nvmlGpuInstanceGetComputeInstances(
        gi, 0, None, ctypes.byref(ctypes.c_uint(0)))),
    ("nvmlGpuInstanceGetComputeInstanceById", lambda s, h, gi: s.nvmlGpuInstanceGetComputeInstanceById(gi, 0)),
]
WRITES = [
    ("nvmlDeviceCreateGpuInstance", lambda s, h, gi: s.nvmlDeviceCreateGpuInstance(h, 19)),
    ("nvmlGpuInstanceCreateComputeInstance", lambda s, h, gi: s.nvmlGpuInstanceCreateComputeInstance(gi, 0)),
    ("nvmlGpuInstanceDestroy", lambda s, h, gi: s.nvmlGpuInstanceDestroy(gi)),
]


@pytest.mark.parametrize("caller", ["root", "mig-config", "user"])
def test_privilege_of_the_simulated_caller(sim, caller):
    """nvml.h: "Requires privileged user" functions refuse a plain user; whole-GPU memory and
    processes in MIG mode answer only root; per MIG device everyone."""
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = sim.nvmlDeviceCreateGpuInstance(h, 19)
    sim.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    sim.configure(caller=caller)
    for name, call in PRIVILEGED_READS:
        if caller == "user":
            with pytest.raises(P.NVMLError_NoPermission):
                call(sim, h, gi)
        else:
            call(sim, h, gi)
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)  # listing MIG devices needs nothing
    assert sim.nvmlDeviceGetMemoryInfo(mig).total == 9728 << 20
    assert sim.nvmlDeviceGetComputeRunningProcesses(mig) == []
    assert sim.nvmlDeviceGetName(mig) == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    assert sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0).instanceCount == 7
    for whole in (sim.nvmlDeviceGetMemoryInfo, sim.nvmlDeviceGetComputeRunningProcesses):
        if caller == "root":
            whole(h)
        else:
            with pytest.raises(P.NVMLError_NoPermission):
                whole(h)
    for name, call in WRITES:
        if caller == "user":
            with pytest.raises(P.NVMLError_NoPermission):
                call(sim, h, gi)
    with pytest.raises(GpuError, match="unknown simulated caller 'admin'; choose one of root"):
        sim.configure(caller="admin")


def test_caller_comes_from_the_environment_for_a_new_state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_MIG_SIM_CALLER", "user")
    sim = open_sim(tmp_path / "gpu.json")
    assert sim.state()["caller"] == "user"
    monkeypatch.delenv("PYTEST_MIG_SIM_CALLER")
    assert open_sim(tmp_path / "gpu.json").state()["caller"] == "user"  # kept in the state
    assert open_sim(tmp_path / "gpu.json", caller="mig-config").state()["caller"] == "mig-config"


def test_fail_next_injects_one_error(sim):
    sim.inject_failure("nvmlDeviceGetCount", "GPU_IS_LOST")
    with pytest.raises(P.NVMLError_GpuIsLost):
        sim.nvmlDeviceGetCount()
    assert sim.nvmlDeviceGetCount() == 1
    sim.inject_failure("nvmlInit", P.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(P.NVMLError_DriverNotLoaded):
        sim.nvmlInit()
    with pytest.raises(GpuError, match="unknown NVML error 'NOPE'"):
        sim.inject_failure("nvmlInit", "NOPE")
    state = json.loads(sim.state_path.read_text())
    state["fail_next"] = {"nvmlDeviceGetHandleByIndex": "NVML_ERROR_UNKNOWN"}  # as tests write it
    sim.state_path.write_text(json.dumps(state))
    with pytest.raises(P.NVMLError_Unknown):
        sim.nvmlDeviceGetHandleByIndex(0)


def test_processes_memory_and_simulated_telemetry(tmp_path):
    sim = open_sim(tmp_path / "gpu.json", layout={"1g.10gb": 7}, clock=lambda: 0.0)
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlDeviceGetPowerUsage(h) == 60_000
    assert sim.nvmlDeviceGetClockInfo(h, P.NVML_CLOCK_SM) == 210
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 3)
    pid = sim.register_process(sim.nvmlDeviceGetUUID(mig), used_memory=1 << 30)
    procs = sim.nvmlDeviceGetComputeRunningProcesses(mig)
    assert [(p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId) for p in procs] == [
        (pid, 1 << 30, 10, 0)]
    assert [p.pid for p in sim.nvmlDeviceGetComputeRunningProcesses(h)] == [pid]
    other = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert sim.nvmlDeviceGetComputeRunningProcesses(other) == []
    assert sim.nvmlDeviceGetMemoryInfo(mig).used == 1 << 30
    # one busy 1g of 7: 60 W + 340 W x 1/7 x 0.875 at t=0, as sim/metrics.py defines it
    assert sim.nvmlDeviceGetPowerUsage(h) == 102_500
    assert sim.nvmlDeviceGetClockInfo(h, P.NVML_CLOCK_SM) == 1410
    assert sim.nvmlDeviceGetTemperature(h, P.NVML_TEMPERATURE_GPU) == 37
    with pytest.raises(P.NVMLError_NotSupported):  # real NVML has no utilisation in MIG mode
        sim.nvmlDeviceGetUtilizationRates(h)
    with pytest.raises(P.NVMLError_NotSupported):
        sim.nvmlDeviceGetPowerUsage(mig)
    plain = open_sim(tmp_path / "plain.json", mig_enabled=False, clock=lambda: 0.0)
    hp = plain.nvmlDeviceGetHandleByIndex(0)
    idle = plain.nvmlDeviceGetUtilizationRates(hp)
    assert (idle.gpu, idle.memory) == (0, 0)
    plain.register_process(gpu_index=0)
    util = plain.nvmlDeviceGetUtilizationRates(hp)
    assert (util.gpu, util.memory) == (56, 30)
    assert plain.nvmlDeviceGetComputeRunningProcesses(hp)[0].gpuInstanceId == 0xFFFFFFFF


def test_state_is_shared_with_another_process(tmp_path, sim):
    code = textwrap.dedent(f"""
        from pytest_mig.gpu.sim.simulator import SimulatedNvml
        s = SimulatedNvml({str(sim.state_path)!r})
        s.nvmlInit()
        h = s.nvmlDeviceGetHandleByIndex(0)
        print(s.nvmlGpuInstanceGetInfo(s.nvmlDeviceCreateGpuInstance(h, 9)).id)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "1"
    h = sim.nvmlDeviceGetHandleByIndex(0)  # the parent's object re-reads the file
    assert [(i.id, i.profileId, i.placement.start) for i in gi_list(sim, h, 9)] == [(1, 9, 0)]


def test_concurrent_creators_lose_no_update(tmp_path, sim):
    code = textwrap.dedent(f"""
        from pytest_mig.gpu.sim.simulator import SimulatedNvml
        s = SimulatedNvml({str(sim.state_path)!r})
        s.nvmlInit()
        s.nvmlDeviceCreateGpuInstance(s.nvmlDeviceGetHandleByIndex(0), 19)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(7)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 7
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert sorted(i.id for i in gi_list(sim, h, 19)) == list(range(7, 14))


def test_state_writes_are_atomic(sim, monkeypatch):
    before = sim.state_path.read_text()
    real_fdopen = os.fdopen

    class HalfWriter:  # the disk fills up halfway through the new state
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:len(data) // 2])
            self.fh.flush()
            raise OSError("disk full")

    monkeypatch.setattr(pytest_mig.io.os, "fdopen",
                        lambda fd, *a, **kw: HalfWriter(real_fdopen(fd, *a, **kw)))
    # One line naming the state file (a GpuError), not a raw OSError traceback.
    from pytest_mig.errors import GpuError
    with pytest.raises(GpuError, match="cannot write the simulated GPU's state .*disk full"):
        sim.nvmlDeviceCreateGpuInstance(sim.nvmlDeviceGetHandleByIndex(0), 19)
    assert sim.state_path.read_text() == before
    assert sorted(p.name for p in sim.state_path.parent.iterdir()) == ["gpu.json", "gpu.json.lock"]
    monkeypatch.setattr(pytest_mig.io.os, "fdopen", real_fdopen)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(pytest_mig.io.os, "replace",
                        lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    sim.nvmlDeviceCreateGpuInstance(sim.nvmlDeviceGetHandleByIndex(0), 19)
    assert len(replaced) == 1 and Path(replaced[0][1]) == sim.state_path
    assert json.loads(sim.state_path.read_text())["gpus"][0]["gpu_instances"][0]["id"] == 7


def test_unreadable_state_is_a_gpu_error_naming_the_file(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text("{not json")
    sim = SimulatedNvml(path)
    with pytest.raises(GpuError, match=r"gpu\.json is unreadable .* delete it"):
        sim.nvmlInit()
    path.write_text('{"gpus": []}')
    with pytest.raises(GpuError, match="not a pytest-mig simulator state"):
        sim.nvmlInit()
