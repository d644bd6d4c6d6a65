"""The H100 table, the simulator and the wrapper against a real H100 capture (MIG disabled)."""
from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path

import pynvml
import pytest

from pytest_mig.gpu.nvml import Nvml
from pytest_mig.gpu.profiles import get_model
from pytest_mig.gpu.sim.simulator import SimulatedNvml

CAPTURE = Path(__file__).parent / "data" / "nvml" / "h100-sxm5-80gb"
DATA = json.loads((CAPTURE / "nvml_gpu_instance_profiles.json").read_text())
GPU = DATA["gpus"][0]
PROFILES = [p for p in GPU["profiles"] if "error" not in p]
# Struct fields NVML returned, as named in pynvml's c_nvmlGpuInstanceProfileInfo_t.
V1_FIELDS = [f for f, _ in pynvml.c_nvmlGpuInstanceProfileInfo_t._fields_]


def parse_lgipp(text: str) -> dict[int, list[tuple[int, int]]]:
    """`nvidia-smi mig -lgipp`: profile id -> [(start, size)]."""
    out = {}
    for m in re.finditer(r"GPU\s+\d+ Profile ID\s+(\d+) Placements?\s*: \{([\d,]+)\}:(\d+)", text):
        out[int(m[1])] = [(int(s), int(m[3])) for s in m[2].split(",")]
    return out


def parse_lgip(text: str) -> list[dict]:
    """`nvidia-smi mig -lgip`: one dict per profile, both table rows merged."""
    rows = []
    first = re.compile(r"^\|\s+\d+\s+MIG (\S+)\s+(\d+)\s+(\d+)/(\d+)\s+([\d.]+)\s+(Yes|No)"
                       r"\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
    second = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
    for line in text.splitlines():
        if m := first.match(line):
            rows.append(dict(name=m[1], id=int(m[2]), free=int(m[3]), total=int(m[4]),
                             gib=m[5], p2p=m[6], sm=int(m[7]), dec=int(m[8]), enc=int(m[9])))
        elif (m := second.match(line)) and rows:
            rows[-1].update(ce=int(m[1]), jpeg=int(m[2]), ofa=int(m[3]))
    return rows


PROBES = json.loads((CAPTURE / "mig_disabled_probes.json").read_text())
LGIP = parse_lgip((CAPTURE / "nvidia-smi_mig_lgip.txt").read_text())
LGIPP = parse_lgipp((CAPTURE / "nvidia-smi_mig_lgipp.txt").read_text())


@pytest.fixture
def sim(tmp_path):
    s = SimulatedNvml(tmp_path / "h100.json", model="H100-SXM5-80GB", mig_enabled=False)
    s.nvmlInit()
    yield s
    s.nvmlShutdown()


def test_capture_parsers_read_every_profile():
    assert [r["id"] for r in LGIP] == [19, 20, 15, 14, 9, 5, 0]
    assert all({"ce", "jpeg", "ofa"} <= set(r) for r in LGIP)
    assert LGIPP == {19: [(s, 1) for s in range(7)], 20: [(s, 1) for s in range(7)],
                     15: [(0, 2), (2, 2), (4, 2), (6, 2)], 14: [(0, 2), (2, 2), (4, 2)],
                     9: [(0, 4), (4, 4)], 5: [(0, 4)], 0: [(0, 8)]}
    assert len(PROFILES) == 7


def test_h100_table_equals_capture():
    model = get_model("H100-SXM5-80GB")
    assert model.nvml_name == GPU["name"]
    assert model.pci_device_id == int(GPU["pci_device_id"], 16)
    assert model.memory_total == GPU["memory_total"]
    assert {p.profile_const for p in model.profiles} == {p["profile_const"] for p in PROFILES}
    for cap in PROFILES:
        p = model.profile_by_const(cap["profile_const"])
        assert (p.nvml_name, p.id, p.instance_count, p.memory_mb, p.sm_count, p.slice_count) == (
            cap["name"], cap["id"], cap["instanceCount"], cap["memorySizeMB"],
            cap["multiprocessorCount"], cap["sliceCount"])
        assert (p.ce, p.dec, p.enc, p.jpeg, p.ofa, int(p.p2p)) == (
            cap["copyEngineCount"], cap["decoderCount"], cap["encoderCount"], cap["jpegCount"],
            cap["ofaCount"], cap["isP2pSupported"])
        assert p.placements == LGIPP[p.id]


def test_simulator_profile_info_equals_capture_for_every_constant(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    for cap in GPU["profiles"]:
        const = cap["profile_const"]
        if "error" in cap:
            with pytest.raises(pynvml.NVMLError_NotSupported) as err:
                sim.nvmlDeviceGetGpuInstanceProfileInfo(h, const)
            assert str(err.value) == cap["error"]
            continue
        v1 = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, const, version=1)
        assert isinstance(v1, pynvml.c_nvmlGpuInstanceProfileInfo_t)
        assert {f: getattr(v1, f) for f in V1_FIELDS} == {f: cap[f] for f in V1_FIELDS}
        v2 = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, const)  # pynvml's default: version 2
        assert isinstance(v2, pynvml.c_nvmlGpuInstanceProfileInfo_v2_t)
        assert {f: getattr(v2, f) for f in V1_FIELDS} == {f: cap[f] for f in V1_FIELDS}
        assert v2.name == cap["name"]  # pynvml's printable struct decodes it
        # The capture's "version": 0 is not the struct's version tag (pynvml sets v2's itself).
        assert v2.version == pynvml.nvmlGpuInstanceProfileInfo_v2
        assert sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, cap["id"]) == cap["remaining"]


def test_simulator_device_answers_equal_capture(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlDeviceGetName(h) == GPU["name"]
    assert sim.nvmlDeviceGetPciInfo(h).pciDeviceId == int(GPU["pci_device_id"], 16)
    assert sim.nvmlDeviceGetMemoryInfo(h).total == GPU["memory_total"]
    assert sim.nvmlDeviceGetMigMode(h) == GPU["mig_mode"]
    assert sim.nvmlDeviceGetMaxMigDeviceCount(h) == GPU["max_mig_devices"]
    assert sim.nvmlSystemGetDriverVersion() == DATA["driver"]
    assert sim.nvmlSystemGetNVMLVersion() == DATA["nvml"]


def test_simulator_placements_equal_lgipp_low_level_form(sim):
    h = sim.nvmlDeviceGetHandleByIndex(0)
    for profile_id, expected in LGIPP.items():
        count = ctypes.c_uint(0)
        assert sim.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, None,
                                                              ctypes.byref(count)) == 0
        assert count.value == len(expected)
        buf = (pynvml.c_nvmlGpuInstancePlacement_t * count.value)()
        sim.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, buf, ctypes.byref(count))
        assert [(buf[i].start, buf[i].size) for i in range(count.value)] == expected
        # Real NVML writes past a short buffer (PROBES: success, count 7 into 2 slots); the
        # simulator refuses it instead.
        small = (pynvml.c_nvmlGpuInstancePlacement_t * (len(expected) - 1))()
        if len(expected) > 1:
            with pytest.raises(pynvml.NVMLError_InsufficientSize):
                sim.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, small,
                                                              ctypes.byref(count))


def test_wrapper_profiles_equal_lgip_and_lgipp(sim):
    nvml = Nvml(sim)
    got = {p.name: p for p in nvml.gi_profiles(0)}
    assert sorted(got) == sorted(r["name"] for r in LGIP)
    for row in LGIP:
        p = got[row["name"]]
        assert (p.id, p.remaining, p.instance_count) == (row["id"], row["free"], row["total"])
        assert f"{p.memory_mb / 1024:.2f}" == row["gib"]
        assert (p.sm_count, p.dec, p.enc, p.ce, p.jpeg, p.ofa) == (
            row["sm"], row["dec"], row["enc"], row["ce"], row["jpeg"], row["ofa"])
        assert row["p2p"] == "No"
        assert p.placements == LGIPP[p.id]
    gpu = nvml.gpu(0)
    assert (gpu.model_key, gpu.mig_current, gpu.mig_pending) == ("H100-SXM5-80GB", False, False)
    assert nvml.instances(0) == []


def test_wrapper_names_profiles_when_the_v2_function_is_missing(sim):
    """The real driver 580 raised FunctionNotFound for nvmlDeviceGetGpuInstanceProfileInfoV."""
    sim.configure(missing_functions=["nvmlDeviceGetGpuInstanceProfileInfoV"])
    h = sim.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0)
    names = [p.name for p in Nvml(sim).gi_profiles(0)]
    assert names == ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.10gb+me",
                     "1g.20gb"]


def test_simulator_answers_raw_calls_like_the_real_h100_with_mig_disabled(sim):
    """Each probe's outcome on the real H100 (driver 580, MIG disabled) and on the simulator."""
    h = sim.nvmlDeviceGetHandleByIndex(0)
    count = ctypes.c_uint(0)
    gis = (pynvml.c_nvmlGpuInstance_t * 7)()
    calls = {
        "GetGpuInstances": lambda: sim.nvmlDeviceGetGpuInstances(h, 19, gis, ctypes.byref(count)),
        "GetGpuInstanceById": lambda: sim.nvmlDeviceGetGpuInstanceById(h, 7),
        "GetMigDeviceHandleByIndex": lambda: sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0),
        "GetMaxMigDeviceCount": lambda: sim.nvmlDeviceGetMaxMigDeviceCount(h),
        "UtilizationRates": lambda: (sim.nvmlDeviceGetUtilizationRates(h).gpu,),
        "PlacementsNullBuffer": lambda: (sim.nvmlDeviceGetGpuInstancePossiblePlacements(
            h, 19, None, ctypes.byref(count)), count.value),
        "ProfileInfoV1": lambda: sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0, version=1).id,
        "ProfileInfoV2": lambda: sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0).name,
        "CreateGpuInstance(MIG disabled)": lambda: sim.nvmlDeviceCreateGpuInstance(h, 19),
        "IsMigDeviceHandle": lambda: sim.nvmlDeviceIsMigDeviceHandle(h),
        "ComputeRunningProcesses": lambda: len(sim.nvmlDeviceGetComputeRunningProcesses(h)),
    }
    for name, call in calls.items():
        try:
            got = ["ok", repr(call())]
        except pynvml.NVMLError as exc:
            got = [type(exc).__name__, exc.value]
        assert got == PROBES["probes"][name], name
        if name == "GetGpuInstances":
            assert count.value == 0
    assert set(PROBES["probes"]) - set(calls) == {"PlacementsSmallBuffer"}
    gpu = PROBES["gpu"]
    info = Nvml(sim).gpu(0)
    assert (info.name, info.model_key, info.pci_device_id, info.memory_total) == (
        gpu["name"], gpu["model_key"], gpu["pci_device_id"], gpu["memory_total"])
    idle = Nvml(sim).sample_metrics(0)
    real = PROBES["idle_metrics"]
    assert (idle.util_pct, idle.sm_clock_mhz, idle.temp_c, round(idle.power_w)) == (
        real["util_pct"], real["sm_clock_mhz"], real["temp_c"], round(real["power_w"]))
    assert PROBES["describe"] == ("GPU backend: real NVML driver 580.159.04 (NVML 13.580.159.04) "
                                  "- 1 x H100-SXM5-80GB, MIG disabled")
