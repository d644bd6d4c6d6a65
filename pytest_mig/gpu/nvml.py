"""The one NVML boundary: `Nvml` wraps an API object (the `pynvml` module or a SimulatedNvml)
and answers in typed values; NVML errors a user can cause become GpuError with the fix.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Callable

import pynvml

from pytest_mig.errors import GpuError, LayoutError, did_you_mean
from pytest_mig.gpu.profiles import (GpuModel, model_for_nvml_name, model_for_pci_device_id)
from pytest_mig.gpu.topology import (GiProfileInfo, GpuInfo, GpuMetrics, MigInstance,
                                     ProcessInfo, Topology, layout_text)

MIB = 1024 * 1024
# GPU-instance compute slices -> NVML_COMPUTE_INSTANCE_PROFILE_* of the CI that fills it.
FULL_CI_PROFILE = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
# Profile constants whose profiles carry media engines (+me) on every MIG GPU so far.
ME_CONSTS = {pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1,
             pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1}
_ERROR_NAMES = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}


class NvmlCallError(GpuError):
    """An NVML call failed; `code` is the NVML_ERROR_* value."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def error_name(exc: pynvml.NVMLError) -> str:
    return _ERROR_NAMES.get(exc.value, f"NVML error {exc.value}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """Typed, error-translating access to one NVML API object."""

    def __init__(self, api: Any, *, initialised: bool = False, gpu_dir: Any = None) -> None:
        self.api = api
        self.simulated = bool(getattr(api, "SIMULATED", False))
        self._gpu_dir = gpu_dir
        self._handles: dict[int, Any] = {}
        self._profile_cache: dict[int, list[tuple[int, Any, str]]] = {}
        # Profile-info V functions (with names) present; not on every driver.
        self._v2 = {"gi": True, "ci": True}
        if not initialised:
            self._call("nvmlInit", "initialise NVML")
        self._open = True

    @property
    def backend(self) -> str:
        return "simulated" if self.simulated else "nvml"

    def close(self) -> None:
        if self._open:
            self._open = False
            self._call("nvmlShutdown", "shut NVML down")

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls and errors -----------------------------------------------------------------

    def _call(self, fn: str, what: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.api, fn)(*args, **kwargs)
        except pynvml.NVMLError as exc:
            raise self._error(exc, fn, what) from exc

    def _error(self, exc: pynvml.NVMLError, fn: str, what: str, fix: str = "") -> NvmlCallError:
        code, name = exc.value, error_name(exc)
        if code == pynvml.NVML_ERROR_NO_PERMISSION and not fix:
            fix = ("MIG instances can only be created or destroyed as root: run pytest with sudo, "
                   "or have an admin create the layout (sudo nvidia-smi mig -cgi ... -C)")
        elif code == pynvml.NVML_ERROR_GPU_IS_LOST:
            fix = ("the GPU fell off the bus: check `nvidia-smi` and dmesg; it needs a reset "
                   "or reboot")
        elif code in (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, pynvml.NVML_ERROR_LIBRARY_NOT_FOUND):
            fix = "no usable NVIDIA driver: install or load it, or use --mig-backend=simulated"
        sim = " (simulated NVML)" if self.simulated else ""
        text = f"cannot {what}: {fn} failed with {name}{sim}"
        return NvmlCallError(f"{text}; {fix}" if fix else text, code)

    def handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self._call("nvmlDeviceGetHandleByIndex",
                                              f"open GPU {index}", index)
        return self._handles[index]

    def _try(self, fn: Callable[[], Any]) -> Any:
        """fn(), or None where NVML does not support the query."""
        try:
            return fn()
        except pynvml.NVMLError_NotSupported:
            return None

    # -- GPUs -----------------------------------------------------------------------------

    def gpu(self, index: int) -> GpuInfo:
        h = self.handle(index)
        what = f"query GPU {index}"
        name = _text(self._call("nvmlDeviceGetName", what, h))
        pci = int(self._call("nvmlDeviceGetPciInfo", what, h).pciDeviceId)
        try:
            current, pending = self.api.nvmlDeviceGetMigMode(h)
        except pynvml.NVMLError_NotSupported:  # a GPU without MIG
            current = pending = 0
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceGetMigMode", what) from exc
        model = self.model_of(pci, name)
        return GpuInfo(index=index, name=name, uuid=_text(self._call("nvmlDeviceGetUUID", what, h)),
                       model_key=model.key if model else None, pci_device_id=pci,
                       memory_total=int(self._call("nvmlDeviceGetMemoryInfo", what, h).total),
                       mig_current=bool(current), mig_pending=bool(pending))

    def gpus(self) -> list[GpuInfo]:
        return [self.gpu(i) for i in range(self._call("nvmlDeviceGetCount", "count GPUs"))]

    def model_of(self, pci_device_id: int, name: str) -> GpuModel | None:
        return (model_for_pci_device_id(pci_device_id, self._gpu_dir)
                or model_for_nvml_name(name, self._gpu_dir))

    def _model(self, index: int) -> GpuModel | None:
        h = self.handle(index)
        pci = int(self._call("nvmlDeviceGetPciInfo", f"query GPU {index}", h).pciDeviceId)
        return self.model_of(pci, _text(self._call("nvmlDeviceGetName", f"query GPU {index}", h)))

    # -- profiles -------------------------------------------------------------------------

    def _profile_info(self, kind: str, fn: str, *args: Any) -> Any:
        """Profile info through the V (named) function, falling back to v1 where it is missing."""
        if self._v2[kind]:
            try:
                return getattr(self.api, fn)(*args, version=2)
            except pynvml.NVMLError_FunctionNotFound:
                self._v2[kind] = False  # the real H100 driver 580 lacked the GI one
        return getattr(self.api, fn)(*args, version=1)

    def _profile_name(self, index: int, const: int, info: Any) -> str:
        name = _text(getattr(info, "name", b"")).strip()
        if name:
            return name[4:] if name.startswith("MIG ") else name
        model = self._model(index)
        known = model.profile_by_id(info.id) if model else None
        if known is not None:
            return known.name
        # No name from NVML and no table: the usual <slices>g.<GiB rounded up>gb spelling.
        suffix = "+me" if const in ME_CONSTS else ""
        return f"{info.sliceCount}g.{math.ceil(info.memorySizeMB / 1024)}gb{suffix}"

    def _profiles(self, index: int) -> list[tuple[int, Any, str]]:
        """(const, NVML profile info, name) of every profile the GPU supports (immutable)."""
        if index not in self._profile_cache:
            h, found = self.handle(index), []
            for const in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
                try:
                    info = self._profile_info("gi", "nvmlDeviceGetGpuInstanceProfileInfo", h, const)
                except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                    continue
                except pynvml.NVMLError as exc:
                    raise self._error(exc, "nvmlDeviceGetGpuInstanceProfileInfo",
                                      f"read MIG profiles of GPU {index}") from exc
                found.append((const, info, self._profile_name(index, const, info)))
            self._profile_cache[index] = found
        return self._profile_cache[index]

    def _placements(self, index: int, profile_id: int) -> list[tuple[int, int]]:
        h, count, what = self.handle(index), ctypes.c_uint(0), f"read MIG placements of GPU {index}"
        fn = "nvmlDeviceGetGpuInstancePossiblePlacements"
        self._call(fn, what, h, profile_id, None, ctypes.byref(count))
        buf = (pynvml.c_nvmlGpuInstancePlacement_t * max(1, count.value))()
        self._call(fn, what, h, profile_id, buf, ctypes.byref(count))
        return [(int(buf[i].start), int(buf[i].size)) for i in range(count.value)]

    def gi_profiles(self, index: int) -> list[GiProfileInfo]:
        """Every GPU-instance profile of GPU `index` with remaining capacity and placements."""
        h, out = self.handle(index), []
        for const, info, name in self._profiles(index):
            remaining = self._call("nvmlDeviceGetGpuInstanceRemainingCapacity",
                                   f"read MIG capacity of GPU {index}", h, info.id)
            out.append(GiProfileInfo(
                name=name, profile_const=const, id=int(info.id),
                instance_count=int(info.instanceCount), remaining=int(remaining),
                memory_mb=int(info.memorySizeMB), sm_count=int(info.multiprocessorCount),
                slice_count=int(info.sliceCount), placements=self._placements(index, info.id),
                ce=int(info.copyEngineCount), dec=int(info.decoderCount),
                enc=int(info.encoderCount), jpeg=int(info.jpegCount), ofa=int(info.ofaCount)))
        return out

    def _profile_named(self, index: int, name: str) -> tuple[int, Any, str]:
        profiles = self._profiles(index)
        for item in profiles:
            if item[2] == name:
                return item
        names = [p[2] for p in profiles]
        raise LayoutError(f"GPU {index} has no MIG profile '{name}'{did_you_mean(name, names)}; "
                          f"its profiles: {', '.join(names) or 'none (no MIG support)'}")

    # -- instances ------------------------------------------------------------------------

    def _mig_devices(self, index: int) -> dict[tuple[int, int], Any]:
        """(gi_id, ci_id) -> MIG device handle, for every compute instance of GPU `index`."""
        h, what, found = self.handle(index), f"list MIG devices of GPU {index}", {}
        for k in range(self._call("nvmlDeviceGetMaxMigDeviceCount", what, h)):
            try:
                mig = self.api.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
            except pynvml.NVMLError_NotFound:
                continue
            except pynvml.NVMLError as exc:
                raise self._error(exc, "nvmlDeviceGetMigDeviceHandleByIndex", what) from exc
            key = (self._call("nvmlDeviceGetGpuInstanceId", what, mig),
                   self._call("nvmlDeviceGetComputeInstanceId", what, mig))
            found[key] = mig
        return found

    def instances(self, index: int) -> list[MigInstance]:
        """GPU `index`'s MIG instances by placement; [] when MIG is disabled."""
        h, what = self.handle(index), f"list MIG instances of GPU {index}"
        if not self.gpu(index).mig_current:
            return []
        devices = self._mig_devices(index)
        out = []
        for _, info, name in self._profiles(index):
            count = ctypes.c_uint(0)
            buf = (pynvml.c_nvmlGpuInstance_t * max(1, info.instanceCount))()
            self._call("nvmlDeviceGetGpuInstances", what, h, info.id, buf, ctypes.byref(count))
            for k in range(count.value):
                gi = self._call("nvmlGpuInstanceGetInfo", what, buf[k])
                cis = sorted(ci for gi_id, ci in devices if gi_id == gi.id) or [None]
                for ci in cis:
                    mig = devices.get((gi.id, ci)) if ci is not None else None
                    uuid = _text(self._call("nvmlDeviceGetUUID", what, mig)) if mig else None
                    out.append(MigInstance(
                        gpu_index=index, gi_id=int(gi.id), ci_id=ci, profile=name,
                        placement_start=int(gi.placement.start),
                        placement_size=int(gi.placement.size), uuid=uuid,
                        memory_bytes=int(info.memorySizeMB) * MIB))
        return sorted(out, key=lambda i: (i.placement_start, i.gi_id, i.ci_id or 0))

    def topology(self) -> Topology:
        gpus = self.gpus()
        return Topology(
            backend=self.backend,
            driver=_text(self._call("nvmlSystemGetDriverVersion", "read the driver version")),
            nvml_version=_text(self._call("nvmlSystemGetNVMLVersion", "read the NVML version")),
            gpus=gpus, instances={g.index: self.instances(g.index) for g in gpus},
            state_path=str(getattr(self.api, "state_path", "")) or None)

    # -- create / destroy (never MIG mode itself) -----------------------------------------

    def _require_mig(self, index: int) -> GpuInfo:
        gpu = self.gpu(index)
        if not gpu.mig_current:
            pending = " (it is pending: reset the GPU with sudo nvidia-smi -i {0} -r)".format(
                index) if gpu.mig_pending else ""
            raise GpuError(f"MIG mode is disabled on GPU {index} ({gpu.name}){pending}; enable it "
                           f"with: sudo nvidia-smi -i {index} -mig 1 (pytest-mig never changes "
                           "MIG mode itself)")
        return gpu

    def create_gpu_instance(self, index: int, profile_name: str, start: int | None = None) -> int:
        """Create a GPU instance of `profile_name` (at memory slice `start`); its GI id."""
        gpu = self._require_mig(index)
        _, info, name = self._profile_named(index, profile_name)
        h, what = self.handle(index), f"create a {name} GPU instance on GPU {index}"
        try:
            if start is None:
                gi = self.api.nvmlDeviceCreateGpuInstance(h, info.id)
            else:
                allowed = dict(self._placements(index, info.id))
                if start not in allowed:
                    raise LayoutError(f"{name} cannot start at memory slice {start} on GPU "
                                      f"{index}; allowed starts: {', '.join(map(str, allowed))}")
                place = pynvml.c_nvmlGpuInstancePlacement_t(start, allowed[start])
                gi = self.api.nvmlDeviceCreateGpuInstanceWithPlacement(h, info.id,
                                                                       ctypes.byref(place))
        except pynvml.NVMLError_InsufficientResources as exc:
            at = f" at memory slice {start}" if start is not None else ""
            raise self._error(exc, "nvmlDeviceCreateGpuInstance", what, (
                f"no room{at}: GPU {index} ({gpu.name}) already has "
                f"{layout_text(self.instances(index))}; destroy instances first (sudo "
                f"nvidia-smi mig -i {index} -dci && sudo nvidia-smi mig -i {index} -dgi) or "
                "pick a layout that fits")) from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceCreateGpuInstance", what) from exc
        return int(self._call("nvmlGpuInstanceGetInfo", what, gi).id)

    def _gi_handle(self, index: int, gi_id: int, what: str) -> Any:
        try:
            return self.api.nvmlDeviceGetGpuInstanceById(self.handle(index), gi_id)
        except pynvml.NVMLError_NotFound as exc:
            raise self._error(exc, "nvmlDeviceGetGpuInstanceById", what,
                              f"GPU {index} has no GPU instance {gi_id} (list them with "
                              f"nvidia-smi mig -i {index} -lgi)") from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceGetGpuInstanceById", what) from exc

    def create_compute_instance(self, index: int, gi_id: int) -> tuple[int, str]:
        """Fill GPU instance `gi_id` with one compute instance: (ci_id, MIG device UUID)."""
        self._require_mig(index)
        what = f"create a compute instance in GPU instance {gi_id} of GPU {index}"
        gi = self._gi_handle(index, gi_id, what)
        slices = next(i.sliceCount for _, i, _ in self._profiles(index)
                      if i.id == self._call("nvmlGpuInstanceGetInfo", what, gi).profileId)
        try:
            ci_info = self._profile_info("ci", "nvmlGpuInstanceGetComputeInstanceProfileInfo", gi,
                                         FULL_CI_PROFILE[slices],
                                         pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
            ci = self.api.nvmlGpuInstanceCreateComputeInstance(gi, ci_info.id)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlGpuInstanceCreateComputeInstance", what) from exc
        ci_id = int(self._call("nvmlComputeInstanceGetInfo", what, ci).id)
        mig = self._mig_devices(index).get((gi_id, ci_id))
        if mig is None:
            raise GpuError(f"compute instance {ci_id} was created in GPU instance {gi_id} of GPU "
                           f"{index}, but NVML lists no MIG device for it; check nvidia-smi -L "
                           f"and remove it with sudo nvidia-smi mig -i {index} -gi {gi_id} -dci")
        return ci_id, _text(self._call("nvmlDeviceGetUUID", what, mig))

    def destroy_compute_instance(self, index: int, gi_id: int, ci_id: int) -> None:
        what = f"destroy compute instance {ci_id} of GPU instance {gi_id} on GPU {index}"
        gi = self._gi_handle(index, gi_id, what)
        try:
            self.api.nvmlComputeInstanceDestroy(
                self.api.nvmlGpuInstanceGetComputeInstanceById(gi, ci_id))
        except pynvml.NVMLError_InUse as exc:
            pids = [p.pid for p in self.processes_on(index, gi_id) if p.ci_id == ci_id]
            raise self._error(exc, "nvmlComputeInstanceDestroy", what,
                              f"processes {pids} still run on it; stop them first") from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlComputeInstanceDestroy", what) from exc

    def destroy_gpu_instance(self, index: int, gi_id: int) -> None:
        what = f"destroy GPU instance {gi_id} on GPU {index}"
        gi = self._gi_handle(index, gi_id, what)
        try:
            self.api.nvmlGpuInstanceDestroy(gi)
        except pynvml.NVMLError_InUse as exc:
            cis = sorted(c for g, c in self._mig_devices(index) if g == gi_id)
            pids = [p.pid for p in self.processes_on(index, gi_id)]
            held = [f"processes {pids} run on it"] if pids else []
            held += [f"it has compute instances {cis}"] if cis else []
            raise self._error(exc, "nvmlGpuInstanceDestroy", what,
                              f"{' and '.join(held) or 'it is busy'}; stop the processes and "
                              "destroy its compute instances first") from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlGpuInstanceDestroy", what) from exc

    # -- processes and telemetry --------------------------------------------------------------

    def processes_on(self, index: int, gi_id: int) -> list[ProcessInfo]:
        """Compute processes on the MIG devices of GPU instance `gi_id`."""
        what, out = f"list processes of GPU instance {gi_id} on GPU {index}", []
        for (g, c), mig in sorted(self._mig_devices(index).items()):
            if g != gi_id:
                continue
            for p in self._call("nvmlDeviceGetComputeRunningProcesses", what, mig):
                out.append(ProcessInfo(pid=int(p.pid), used_memory=p.usedGpuMemory,
                                       gi_id=g, ci_id=c))
        return out

    def sample_metrics(self, index: int) -> GpuMetrics:
        """One telemetry sample; `simulated` marks the simulator's made-up values."""
        h, what = self.handle(index), f"sample GPU {index}"

        def q(fn: str, *args: Any) -> Any:
            return self._try(lambda: getattr(self.api, fn)(h, *args))

        try:
            util = q("nvmlDeviceGetUtilizationRates")
            mem = self._call("nvmlDeviceGetMemoryInfo", what, h)
            power = q("nvmlDeviceGetPowerUsage")
            clock = q("nvmlDeviceGetClockInfo", pynvml.NVML_CLOCK_SM)
            temp = q("nvmlDeviceGetTemperature", pynvml.NVML_TEMPERATURE_GPU)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "telemetry", what) from exc
        return GpuMetrics(util_pct=None if util is None else int(util.gpu),
                          mem_used=int(mem.used), mem_total=int(mem.total),
                          power_w=None if power is None else power / 1000.0,
                          sm_clock_mhz=clock, temp_c=temp, simulated=self.simulated)

    def mig_memory_used(self, uuid: str) -> int:
        """Bytes used on MIG device `uuid` ("MIG-...")."""
        what = f"read memory use of {uuid}"
        try:
            h = self.api.nvmlDeviceGetHandleByUUID(uuid)
        except pynvml.NVMLError_NotFound as exc:
            raise self._error(exc, "nvmlDeviceGetHandleByUUID", what,
                              "no such MIG device (list them with nvidia-smi -L)") from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceGetHandleByUUID", what) from exc
        return int(self._call("nvmlDeviceGetMemoryInfo", what, h).used)

    def device_processes(self, uuid: str) -> list[int]:
        """Pids of every compute process NVML sees on device `uuid` (a GPU or a MIG device),
        MPS clients included: what an isolated baseline checks is alone on its GPU."""
        what = f"list compute processes on {uuid}"
        try:
            h = self.api.nvmlDeviceGetHandleByUUID(uuid)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceGetHandleByUUID", what) from exc
        pids = {int(p.pid) for p in self._call("nvmlDeviceGetComputeRunningProcesses", what, h)}
        mps = getattr(self.api, "nvmlDeviceGetMPSComputeRunningProcesses", None)
        if mps is not None:
            extra = self._try(lambda: mps(h))
            pids.update(int(p.pid) for p in extra or [])
        return sorted(pids)
