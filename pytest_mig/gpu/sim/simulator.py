"""An NVML simulator with pynvml's function names, argument shapes, structs and error codes.

`SimulatedNvml` stands in for the `pynvml` module where no driver is present. Answers come
from the profile tables in fixtures/gpus; the GPU state lives in a JSON file (sim/state.py)
that every call re-reads under a lock, so all processes of a run see one GPU.

Error semantics follow the NVML reference (nvml.h) and what a real H100 (driver 580, MIG
disabled) answered (tests/data/nvml/h100-sxm5-80gb/mig_disabled_probes.json): creating an
instance with MIG mode disabled is NVML_ERROR_NOT_SUPPORTED, while profile info, possible
placements and remaining capacity stay readable, listing GPU instances finds none, and
looking one up by id or a MIG device by index is NVML_ERROR_NOT_FOUND. No room is
NVML_ERROR_INSUFFICIENT_RESOURCES; destroying an instance with compute instances or
processes is NVML_ERROR_IN_USE. The simulated caller's privilege (root, mig-config, user)
and the switchable faults are described in sim/base.py; `fail_next: {function: code}` in the
state fails that function's next call once.

Compute-instance profiles inside a GPU instance follow what NVML offers on hardware (and
go-nvlib's rule for valid ones): C compute slices in a G-slice GPU instance exist when
C == G or 2C <= G + 1 (so no 3c in a 4g), and NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1
(profile 7) exists only in a 1-slice GPU instance with more SMs than the plain 1g profile
(1g.20gb on H100/H200: profile 7 fills it, profile 0 gets the 1g SM count). SM counts of
partial compute instances are C x the 1g profile's SMs: not read from hardware.
Telemetry (metrics.py) and GPM on Hopper-or-later models (gpm.py) are mixed in.
"""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pynvml

from pytest_mig.errors import GpuError, LayoutError
from pytest_mig.gpu.planner import plan
from pytest_mig.gpu.profiles import GpuModel, MigProfile, default_gpu_dir, get_model
from pytest_mig.gpu.sim.state import State, StateFile, new_state, stable_uuid
from pytest_mig.gpu.sim.base import (KIND_CI, KIND_DEVICE, KIND_GI, KIND_MIG, SimBase,
                                     check_caller, fill_list, gpu_instance_id, lowest_free_start,
                                     make_handle)
from pytest_mig.gpu.sim.gpm import GpmMixin
from pytest_mig.gpu.sim.metrics import TelemetryMixin

# NVML_COMPUTE_INSTANCE_PROFILE_* index -> compute slices.
CI_SLICES = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7, 5: 8, 6: 6, 7: 1}
CI_REV1 = 7  # NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1
CALLER_ENV = "PYTEST_MIG_SIM_CALLER"  # root | mig-config | user, for a whole simulated run
E = pynvml  # error codes: E.NVML_ERROR_*


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


def ci_profiles(model: GpuModel, gp: MigProfile) -> dict[int, tuple[int, int]]:
    """Compute-instance profiles a `gp` GPU instance offers: {const: (slices, SMs)}."""
    g = gp.slice_count
    one = model.profile_by_const(0)
    base = one.sm_count if one is not None else gp.sm_count // g
    out = {}
    for const, c in CI_SLICES.items():
        if const == CI_REV1:
            if g == 1 and gp.sm_count > base:
                out[const] = (1, gp.sm_count)
        elif c == g:
            out[const] = (c, gp.sm_count if not (g == 1 and gp.sm_count > base) else base)
        elif c < g and 2 * c <= g + 1:
            out[const] = (c, min(c * base, gp.sm_count))
    return out


def full_ci_const(model: GpuModel, gp: MigProfile) -> int:
    """The compute-instance profile that fills a `gp` GPU instance (most SMs)."""
    offered = ci_profiles(model, gp)
    return max(offered, key=lambda c: (offered[c][0], offered[c][1]))


class SimulatedNvml(GpmMixin, TelemetryMixin, SimBase):
    """Drop-in for the `pynvml` module on a simulated GPU; `SIMULATED` tells them apart."""

    SIMULATED = True

    def __init__(self, state_path: Path | str, model: str = "A100-SXM4-80GB", gpu_count: int = 1,
                 layout: Mapping[str, int] | Any | None = None, mig_enabled: bool = True, *,
                 seed: int = 0, gpu_dir: Path | str | None = None,
                 clock: Callable[[], float] = time.time, caller: str | None = None) -> None:
        """`caller`: who the simulated process is (root, mig-config, user); None keeps the
        state's (a new state: $PYTEST_MIG_SIM_CALLER, else root)."""
        self._file = StateFile(state_path)
        self.state_path = self._file.path
        self._clock = clock
        self._init_count = 0
        caller = caller or os.environ.get(CALLER_ENV) or None
        with self._file.locked():
            if not self._file.exists():
                st = self._fresh(model, gpu_count, layout, mig_enabled, seed,
                                 Path(gpu_dir or default_gpu_dir()).resolve())
                st["caller"] = check_caller(caller or "root")
                self._file.write(st)
            elif caller is not None:
                st = self._file.read()
                if st.get("caller") != check_caller(caller):
                    st["caller"] = caller
                    self._file.write(st)

    def _fresh(self, model_key: str, gpu_count: int, layout: Any, mig_enabled: bool, seed: int,
               gpu_dir: Path) -> State:
        if gpu_count < 1:
            raise GpuError(f"a simulated host needs at least 1 GPU, got {gpu_count}")
        model = get_model(model_key, gpu_dir)
        st = new_state(model_key, gpu_count, mig_enabled, seed, gpu_dir)
        for gpu in st["gpus"]:
            wanted = (layout.for_gpu(gpu["index"], model.pci_device_id)
                      if hasattr(layout, "for_gpu") else layout)
            if not wanted:
                continue
            if not mig_enabled:
                raise LayoutError(f"cannot pre-create MIG instances {dict(wanted)} on simulated "
                                  f"GPU {gpu['index']}: the simulator was asked for MIG disabled")
            for p in plan(model, wanted):
                gp = model.profile(p.profile)
                gi = self._add_gi(st, gpu, model, gp, p.start)
                self._add_ci(st, gpu, model, gi, full_ci_const(model, gp))
        return st

    def __getattr__(self, name: str) -> Any:
        # Constants, structs and error classes are pynvml's own.
        if name.startswith(("NVML", "c_nvml", "nvmlStructToFriendlyObject")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    # -- library --------------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        with self._tx("nvmlInitWithFlags", needs_init=False):
            self._init_count += 1

    def nvmlInit(self) -> None:
        with self._tx("nvmlInit", needs_init=False):
            self._init_count += 1

    def nvmlShutdown(self) -> None:
        with self._tx("nvmlShutdown"):
            self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        with self._tx("nvmlSystemGetDriverVersion") as st:
            return st["driver_version"]

    def nvmlSystemGetNVMLVersion(self) -> str:
        with self._tx("nvmlSystemGetNVMLVersion") as st:
            return st["nvml_version"]

    # -- devices --------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        with self._tx("nvmlDeviceGetCount") as st:
            return len(st["gpus"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        with self._tx("nvmlDeviceGetHandleByIndex") as st:
            if not 0 <= int(index) < len(st["gpus"]):
                raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
            return make_handle(KIND_DEVICE, int(index))

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Any:
        text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        with self._tx("nvmlDeviceGetHandleByUUID") as st:
            for gpu in st["gpus"]:
                if gpu["uuid"] == text:
                    return make_handle(KIND_DEVICE, gpu["index"])
                for gi, ci in self._cis(gpu):
                    if ci["uuid"] == text:
                        return make_handle(KIND_MIG, gpu["index"], gi["id"], ci["id"])
            raise _err(E.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        with self._tx("nvmlDeviceGetName") as st:
            gpu, gi, ci = self._any_device(st, handle)
            model = self._model(st, gpu)
            if ci is None:
                return model.nvml_name
            return f"{model.nvml_name} MIG {self._ci_name(model, gi, ci)}"

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        with self._tx("nvmlDeviceGetUUID") as st:
            gpu, _, ci = self._any_device(st, handle)
            return gpu["uuid"] if ci is None else ci["uuid"]

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        with self._tx("nvmlDeviceGetPciInfo") as st:
            gpu = self._device(st, handle)
            info = pynvml.nvmlPciInfo_t()
            bus = int(gpu["pci_bus_id"].split(":")[1], 16)
            info.busId = info.busIdLegacy = gpu["pci_bus_id"].encode()
            info.domain, info.bus, info.device = 0, bus, 0
            info.pciDeviceId = self._model(st, gpu).pci_device_id
            info.pciSubSystemId = 0x147F10DE
            return info

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        with self._tx("nvmlDeviceGetMemoryInfo") as st:
            gpu, gi, ci = self._any_device(st, handle)
            self._require_monitor(st, gpu, whole_gpu=ci is None)
            model = self._model(st, gpu)
            if ci is None:
                total, procs = model.memory_total, gpu["processes"]
            else:
                total = model.profile_by_id(gi["profile_id"]).memory_bytes
                procs = [p for p in gpu["processes"]
                         if (p["gi_id"], p["ci_id"]) == (gi["id"], ci["id"])]
            used = min(total, sum(p["used_memory"] for p in procs))
            mem = pynvml.c_nvmlMemory_t() if not version else pynvml.c_nvmlMemory_v2_t()
            if version:
                mem.version, mem.reserved = version, 0
            mem.total, mem.used, mem.free = total, used, total - used
            return mem

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        with self._tx("nvmlDeviceGetMigMode") as st:
            gpu = self._device(st, handle)
            return [int(gpu["mig_current"]), int(gpu["mig_pending"])]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        with self._tx("nvmlDeviceGetMaxMigDeviceCount") as st:
            gpu = self._device(st, handle)
            # The real H100 with MIG disabled answered 0.
            return self._model(st, gpu).compute_slices if gpu["mig_current"] else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        with self._tx("nvmlDeviceGetMigDeviceHandleByIndex") as st:
            gpu = self._device(st, handle)
            cis = sorted(self._cis(self._listed(st, gpu)), key=lambda gc: (gc[0]["id"], gc[1]["id"]))
            slots: list[tuple[dict, dict] | None] = list(cis)
            if gpu["mig_current"] and self._fault(st, "index_gaps"):
                gaps, slots = self._model(st, gpu).compute_slices - len(cis), []
                for item in cis:  # an unused index before each device while room is left
                    if gaps > 0:
                        slots.append(None)
                        gaps -= 1
                    slots.append(item)
            if not 0 <= int(index) < len(slots):
                raise _err(E.NVML_ERROR_NOT_FOUND)  # also with MIG disabled, as the real H100
            if slots[int(index)] is None:
                raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
            gi, ci = slots[int(index)]
            return make_handle(KIND_MIG, gpu["index"], gi["id"], ci["id"])

    def nvmlDeviceIsMigDeviceHandle(self, handle: Any) -> Any:
        with self._tx("nvmlDeviceIsMigDeviceHandle") as st:
            _, _, ci = self._any_device(st, handle)
            return ctypes.c_uint(0 if ci is None else 1)  # pynvml returns the c_uint itself

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        with self._tx("nvmlDeviceGetGpuInstanceId") as st:
            return self._mig(st, handle)[1]["id"]

    def nvmlDeviceGetComputeInstanceId(self, handle: Any) -> int:
        with self._tx("nvmlDeviceGetComputeInstanceId") as st:
            return self._mig(st, handle)[2]["id"]

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Any) -> Any:
        with self._tx("nvmlDeviceGetDeviceHandleFromMigDeviceHandle") as st:
            return make_handle(KIND_DEVICE, self._mig(st, handle)[0]["index"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        with self._tx("nvmlDeviceGetComputeRunningProcesses") as st:
            gpu, gi, ci = self._any_device(st, handle)
            self._require_monitor(st, gpu, whole_gpu=ci is None)
            procs = [p for p in gpu["processes"]
                     if ci is None or (p["gi_id"], p["ci_id"]) == (gi["id"], ci["id"])]
            out = []
            for p in procs:
                none = 0xFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE outside MIG
                info = pynvml.c_nvmlProcessInfo_v3_t(
                    pid=p["pid"], usedGpuMemory=p["used_memory"],
                    gpuInstanceId=none if p["gi_id"] is None else p["gi_id"],
                    computeInstanceId=none if p["ci_id"] is None else p["ci_id"])
                out.append(pynvml.nvmlStructToFriendlyObject(info))
            return out

    # -- GPU instance profiles ------------------------------------------------------------

    def nvmlDeviceGetGpuInstanceProfileInfo(self, handle: Any, profile: int,
                                            version: int = 2) -> Any:
        fn = {2: "nvmlDeviceGetGpuInstanceProfileInfoV", 1: "nvmlDeviceGetGpuInstanceProfileInfo"}
        if version not in fn:
            raise _err(E.NVML_ERROR_FUNCTION_NOT_FOUND)  # what pynvml raises
        with self._tx(fn[version]) as st:
            gpu = self._device(st, handle)
            if not 0 <= int(profile) < pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT:
                raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
            p = self._model(st, gpu).profile_by_const(int(profile))
            if p is None:
                raise _err(E.NVML_ERROR_NOT_SUPPORTED)  # as the H100 capture for consts 5, 6, 8...
            info = (pynvml.c_nvmlGpuInstanceProfileInfo_v2_t() if version == 2
                    else pynvml.c_nvmlGpuInstanceProfileInfo_t())
            info.id, info.isP2pSupported, info.sliceCount = p.id, int(p.p2p), p.slice_count
            info.instanceCount = 1 if self._fault(st, "wrong_instance_count") else p.instance_count
            info.multiprocessorCount = p.sm_count
            info.copyEngineCount, info.decoderCount, info.encoderCount = p.ce, p.dec, p.enc
            info.jpegCount, info.ofaCount, info.memorySizeMB = p.jpeg, p.ofa, p.memory_mb
            if version == 2:
                info.name = p.nvml_name.encode()
            return info

    def nvmlDeviceGetGpuInstancePossiblePlacements(self, handle: Any, profileId: int,
                                                   placementsRef: Any, countRef: Any) -> int:
        with self._tx("nvmlDeviceGetGpuInstancePossiblePlacements_v2") as st:
            p = self._profile(st, self._device(st, handle), profileId)
            items = [pynvml.c_nvmlGpuInstancePlacement_t(s, p.placement_size)
                     for s in p.placement_starts]
            return fill_list(placementsRef, countRef, items)

    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, handle: Any, profileId: int) -> int:
        with self._tx("nvmlDeviceGetGpuInstanceRemainingCapacity") as st:
            gpu = self._device(st, handle)
            return self._remaining(gpu, self._model(st, gpu), self._profile(st, gpu, profileId))

    # -- GPU instances --------------------------------------------------------------------

    def nvmlDeviceCreateGpuInstance(self, handle: Any, profileId: int) -> Any:
        return self._create_gi("nvmlDeviceCreateGpuInstance", handle, profileId, None)

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, handle: Any, profileId: int,
                                                 placement: Any) -> Any:
        obj = getattr(placement, "_obj", placement)
        if isinstance(obj, ctypes._Pointer):
            obj = obj.contents
        if not isinstance(obj, pynvml.c_nvmlGpuInstancePlacement_t):
            raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
        return self._create_gi("nvmlDeviceCreateGpuInstanceWithPlacement", handle, profileId,
                               (int(obj.start), int(obj.size)))

    def _create_gi(self, fn: str, handle: Any, profile_id: int,
                   placement: tuple[int, int] | None) -> Any:
        with self._tx(fn, write=True) as st:
            gpu = self._device(st, handle)
            self._require_mig(gpu)
            model = self._model(st, gpu)
            p = self._profile(st, gpu, profile_id)
            if placement is None:
                start = lowest_free_start(gpu, model, p)
                if start is None:
                    raise _err(E.NVML_ERROR_INSUFFICIENT_RESOURCES)
            else:
                start, size = placement
                if size != p.placement_size or start not in p.placement_starts:
                    raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
                if self._remaining(gpu, model, p, at=start) == 0:
                    raise _err(E.NVML_ERROR_INSUFFICIENT_RESOURCES)
            self._before_change(st, gpu)
            gi = self._add_gi(st, gpu, model, p, start)
            return make_handle(KIND_GI, gpu["index"], gi["id"])

    def nvmlDeviceGetGpuInstances(self, handle: Any, profileId: int, gpuInstancesRef: Any,
                                  countRef: Any) -> int:
        with self._tx("nvmlDeviceGetGpuInstances") as st:
            gpu = self._device(st, handle)
            p = self._profile(st, gpu, profileId)  # MIG disabled: an empty list, as real NVML
            gis = [make_handle(KIND_GI, gpu["index"], gi["id"])
                   for gi in sorted(self._listed(st, gpu), key=lambda g: g["id"])
                   if gi["profile_id"] == p.id]
            return fill_list(gpuInstancesRef, countRef, gis)

    def nvmlDeviceGetGpuInstanceById(self, handle: Any, gpuInstanceId: int) -> Any:
        with self._tx("nvmlDeviceGetGpuInstanceById") as st:
            gpu = self._device(st, handle)
            if not any(gi["id"] == int(gpuInstanceId) for gi in gpu["gpu_instances"]):
                raise _err(E.NVML_ERROR_NOT_FOUND)
            return make_handle(KIND_GI, gpu["index"], int(gpuInstanceId))

    def nvmlGpuInstanceGetInfo(self, gpuInstance: Any) -> Any:
        with self._tx("nvmlGpuInstanceGetInfo") as st:
            gpu, gi = self._gi(st, gpuInstance)
            info = pynvml.c_nvmlGpuInstanceInfo_t()
            info.device = make_handle(KIND_DEVICE, gpu["index"])
            info.id, info.profileId = gi["id"], gi["profile_id"]
            info.placement = pynvml.c_nvmlGpuInstancePlacement_t(gi["start"], gi["size"])
            return info

    def nvmlGpuInstanceDestroy(self, gpuInstance: Any) -> int:
        with self._tx("nvmlGpuInstanceDestroy", write=True) as st:
            gpu, gi = self._gi(st, gpuInstance)
            if gi["compute_instances"] or any(p["gi_id"] == gi["id"] for p in gpu["processes"]):
                raise _err(E.NVML_ERROR_IN_USE)
            self._take_stray_in_use(st)
            self._before_change(st, gpu)
            gpu["gpu_instances"].remove(gi)
            return pynvml.NVML_SUCCESS

    # -- compute instances ----------------------------------------------------------------

    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, gpuInstance: Any, profile: int,
                                                     engProfile: int, version: int = 2) -> Any:
        fn = {2: "nvmlGpuInstanceGetComputeInstanceProfileInfoV",
              1: "nvmlGpuInstanceGetComputeInstanceProfileInfo"}
        if version not in fn:
            raise _err(E.NVML_ERROR_FUNCTION_NOT_FOUND)
        with self._tx(fn[version]) as st:
            gpu, gi = self._gi(st, gpuInstance)
            if engProfile != pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED or not (
                    0 <= int(profile) < pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
                raise _err(E.NVML_ERROR_INVALID_ARGUMENT)
            model = self._model(st, gpu)
            gp = model.profile_by_id(gi["profile_id"])
            offered = ci_profiles(model, gp)
            if int(profile) not in offered:
                raise _err(E.NVML_ERROR_NOT_SUPPORTED)
            slices, sms = offered[int(profile)]
            info = (pynvml.c_nvmlComputeInstanceProfileInfo_v2_t() if version == 2
                    else pynvml.c_nvmlComputeInstanceProfileInfo_t())
            info.id, info.sliceCount = int(profile), slices
            info.instanceCount = gp.slice_count // slices
            info.multiprocessorCount = sms
            info.sharedCopyEngineCount, info.sharedDecoderCount = gp.ce, gp.dec
            info.sharedEncoderCount, info.sharedJpegCount = gp.enc, gp.jpeg
            info.sharedOfaCount = gp.ofa
            if version == 2:
                info.name = f"MIG {self._ci_label(gp, slices, sms)}".encode()
            return info

    def nvmlGpuInstanceCreateComputeInstance(self, gpuInstance: Any, profileId: int) -> Any:
        with self._tx("nvmlGpuInstanceCreateComputeInstance", write=True) as st:
            gpu, gi = self._gi(st, gpuInstance)
            model = self._model(st, gpu)
            if int(profileId) not in ci_profiles(model, model.profile_by_id(gi["profile_id"])):
                raise _err(E.NVML_ERROR_NOT_SUPPORTED)
            self._before_change(st, gpu)
            ci = self._add_ci(st, gpu, model, gi, int(profileId))
            if ci is None:
                raise _err(E.NVML_ERROR_INSUFFICIENT_RESOURCES)
            return make_handle(KIND_CI, gpu["index"], gi["id"], ci["id"])

    def nvmlGpuInstanceGetComputeInstances(self, gpuInstance: Any, profileId: int,
                                           computeInstancesRef: Any, countRef: Any) -> int:
        with self._tx("nvmlGpuInstanceGetComputeInstances") as st:
            gpu, gi = self._gi(st, gpuInstance)
            cis = [make_handle(KIND_CI, gpu["index"], gi["id"], ci["id"])
                   for ci in sorted(gi["compute_instances"], key=lambda c: c["id"])
                   if ci["profile_id"] == int(profileId)]
            return fill_list(computeInstancesRef, countRef, cis)

    def nvmlGpuInstanceGetComputeInstanceById(self, gpuInstance: Any,
                                              computeInstanceId: int) -> Any:
        with self._tx("nvmlGpuInstanceGetComputeInstanceById") as st:
            gpu, gi = self._gi(st, gpuInstance)
            if not any(ci["id"] == int(computeInstanceId) for ci in gi["compute_instances"]):
                raise _err(E.NVML_ERROR_NOT_FOUND)
            return make_handle(KIND_CI, gpu["index"], gi["id"], int(computeInstanceId))

    def nvmlComputeInstanceGetInfo(self, computeInstance: Any) -> Any:
        with self._tx("nvmlComputeInstanceGetInfo_v2") as st:
            gpu, gi, ci = self._ci(st, computeInstance)
            info = pynvml.c_nvmlComputeInstanceInfo_t()
            info.device = make_handle(KIND_DEVICE, gpu["index"])
            info.gpuInstance = make_handle(KIND_GI, gpu["index"], gi["id"])
            info.id, info.profileId = ci["id"], ci["profile_id"]
            info.placement = pynvml.c_nvmlComputeInstancePlacement_t(ci["start"], ci["size"])
            return info

    def nvmlComputeInstanceDestroy(self, computeInstance: Any) -> int:
        with self._tx("nvmlComputeInstanceDestroy", write=True) as st:
            gpu, gi, ci = self._ci(st, computeInstance)
            if any((p["gi_id"], p["ci_id"]) == (gi["id"], ci["id"]) for p in gpu["processes"]):
                raise _err(E.NVML_ERROR_IN_USE)
            self._take_stray_in_use(st)
            self._before_change(st, gpu)
            gi["compute_instances"].remove(ci)
            return pynvml.NVML_SUCCESS

    # -- geometry -------------------------------------------------------------------------

    def _gi_id(self, st: State, gpu: dict, model: GpuModel, p: MigProfile, start: int) -> int:
        """From the placement; with history_ids from a rotating counter (free ids only)."""
        if not self._fault(st, "history_ids"):
            return gpu_instance_id(model, start, p.placement_size)
        n, used = 2 * model.memory_slices - 2, {g["id"] for g in gpu["gpu_instances"]}
        serial = gpu.get("gi_serial", 0)
        gpu["gi_serial"] = serial + 1
        return next(i for k in range(n) for i in [(serial * 5 + gpu["index"] * 3 + k) % n + 1]
                    if i not in used)

    def _add_gi(self, st: State, gpu: dict, model: GpuModel, p: MigProfile, start: int) -> dict:
        gi = {"id": self._gi_id(st, gpu, model, p, start), "profile_id": p.id,
              "start": start, "size": p.placement_size, "compute_instances": []}
        gpu["gpu_instances"].append(gi)
        return gi

    def _add_ci(self, st: State, gpu: dict, model: GpuModel, gi: dict, const: int) -> dict | None:
        gp = model.profile_by_id(gi["profile_id"])
        slices = ci_profiles(model, gp)[const][0]
        taken = {s for c in gi["compute_instances"]
                 for s in range(c["start"], c["start"] + c["size"])}
        for start in range(0, gp.slice_count - slices + 1, slices):
            if taken.isdisjoint(range(start, start + slices)):
                break
        else:
            return None
        ci = {"id": start, "profile_id": const, "start": start, "size": slices,
              "uuid": stable_uuid("MIG", st["seed"], gpu["index"], "mig", gpu["uuid_serial"])}
        gpu["uuid_serial"] += 1
        gi["compute_instances"].append(ci)
        return ci

    def _cis(self, gpu: dict | list[dict]) -> Iterator[tuple[dict, dict]]:
        """(gi, ci) of a GPU's instances, or of a list of GPU instances."""
        for gi in gpu["gpu_instances"] if isinstance(gpu, dict) else gpu:
            for ci in gi["compute_instances"]:
                yield gi, ci

    @staticmethod
    def _ci_label(gp: MigProfile, slices: int, sms: int) -> str:
        """'3g.40gb' for a compute instance filling its GPU instance, else '1c.3g.40gb'."""
        full = slices == gp.slice_count and sms == gp.sm_count
        return gp.name if full else f"{slices}c.{gp.name}"

    def _ci_name(self, model: GpuModel, gi: dict, ci: dict) -> str:
        gp = model.profile_by_id(gi["profile_id"])
        slices, sms = ci_profiles(model, gp)[ci["profile_id"]]
        return self._ci_label(gp, slices, sms)
