"""The one NVML boundary: `Nvml` wraps an API object (the `pynvml` module or a SimulatedNvml)
and answers in typed values; NVML errors a user can cause become GpuError with the fix.

Rules, from nvml.h and what MIG nodes do (the simulator models each, gpu/sim/base.py):
- NO_PERMISSION names what was refused: creating/destroying, a privileged MIG read, or a
  whole-GPU read in MIG mode; the fix is "run as root or grant the mig-config capability".
- Read-only discovery never needs privileges: what NVML refuses to a non-root caller (GPU
  instance listing and placements, whole-GPU memory) is taken from the MIG devices and the
  profile table instead, and recorded in `notes` ("could not read ...").
- Instance ids are the driver's: never derived from placements. Listings may lag a change,
  MIG device indexes may have gaps (INVALID_ARGUMENT), a destroy may meet IN_USE from
  another NVML client; each is retried briefly or explained, never a crash.
- A MIG mode change pending a GPU reset refuses creating instances (a reset wipes them).
"""
from __future__ import annotations

import ctypes
import math
import time
from typing import Any, Callable

import pynvml

from pytest_mig.errors import GpuError, LayoutError, did_you_mean
from pytest_mig.gpu.profiles import (GpuModel, model_for_nvml_name, model_for_pci_device_id)
from pytest_mig.gpu.topology import (GiProfileInfo, GpuInfo, GpuMetrics, MigInstance,
                                     ProcessInfo, Topology, layout_text)

MIB = 1024 * 1024
# Profile constants whose profiles carry media engines (+me) on every MIG GPU so far.
ME_CONSTS = {pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1,
             pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1}
_ERROR_NAMES = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}
# More GPU instances than any MIG GPU has memory slices: list buffers never trust instanceCount.
MAX_GPU_INSTANCES = 32
# Functions that change the MIG layout, and reads nvml.h reserves to a privileged user.
WRITE_FNS = frozenset({"nvmlDeviceCreateGpuInstance", "nvmlDeviceCreateGpuInstanceWithPlacement",
                       "nvmlGpuInstanceDestroy", "nvmlGpuInstanceCreateComputeInstance",
                       "nvmlComputeInstanceDestroy"})
WHOLE_GPU_FNS = frozenset({"nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses"})
GRANT = ("run as root or grant the mig-config capability (MIG user guide, 'Device Nodes and "
         "Capabilities')")
STRAY_IN_USE = ("no process runs on it, so another NVML client holds it (e.g. DCGM, "
                "dcgm-exporter or a monitoring agent): stop that client (e.g. sudo systemctl "
                "stop nvidia-dcgm) and retry")
RETRIES = 3  # listing lag and stray IN_USE: tries before giving up
RETRY_S = 0.05


def pending_text(gpu: GpuInfo) -> str:
    """MIG enabled now, disabled after the next reset: instances made now would vanish."""
    return (f"MIG mode change pending: reset the GPU. GPU {gpu.index} ({gpu.label}) has MIG "
            f"enabled now but disabled after its next reset, which would wipe any instance "
            f"made now; reset it (sudo nvidia-smi -i {gpu.index} -r) to finish the change, or "
            f"cancel it with sudo nvidia-smi -i {gpu.index} -mig 1")


class NvmlCallError(GpuError):
    """An NVML call failed; `code` is the NVML_ERROR_* value."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def error_name(exc: pynvml.NVMLError) -> str:
    return _ERROR_NAMES.get(exc.value, f"NVML error {exc.value}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def permission_fix(fn: str) -> str:
    """What a NO_PERMISSION from `fn` means and how to get past it."""
    if fn in WRITE_FNS:
        return (f"creating or destroying MIG instances needs root or the mig-config "
                f"capability: {GRANT}, or have an admin create the layout (sudo nvidia-smi mig "
                "-cgi ... -C)")
    if fn in WHOLE_GPU_FNS:
        return (f"with MIG enabled NVML answers whole-GPU memory and process queries only to "
                f"root: run as root, or read the MIG devices instead")
    return f"NVML answers this MIG query only to a privileged user: {GRANT}"


def _no_permission(exc: pynvml.NVMLError) -> bool:
    return exc.value == pynvml.NVML_ERROR_NO_PERMISSION


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
        self._notes: dict[int, dict[str, str]] = {}  # GPU -> what -> why it could not be read
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
            fix = permission_fix(fn)
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
        try:
            memory_total = int(self.api.nvmlDeviceGetMemoryInfo(h).total)
        except pynvml.NVMLError as exc:
            if not (_no_permission(exc) and current):
                raise self._error(exc, "nvmlDeviceGetMemoryInfo", what) from exc
            memory_total = model.memory_total if model else 0
            self._note(index, "total memory", "nvmlDeviceGetMemoryInfo", exc,
                       f"the {model.key} table's figure is used" if model else "shown as 0")
        return GpuInfo(index=index, name=name, uuid=_text(self._call("nvmlDeviceGetUUID", what, h)),
                       model_key=model.key if model else None, pci_device_id=pci,
                       memory_total=memory_total,
                       mig_current=bool(current), mig_pending=bool(pending))

    def _note(self, index: int, what: str, fn: str, exc: pynvml.NVMLError, instead: str) -> None:
        self._notes.setdefault(index, {})[what] = f"{fn}: {error_name(exc)}; {instead}"

    def notes(self) -> list[str]:
        """What NVML refused to read for this caller, one line per GPU and item."""
        return [f"GPU {i}: could not read {what} ({why})"
                for i, items in sorted(self._notes.items()) for what, why in items.items()]

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
            model = self._model(index)
            if model is not None and "instance_count" in model.nvml_quirks:
                for _, info, name in found:  # NVML's figure is wrong here; the table's wins
                    known = model.profile_by_id(int(info.id))
                    if known is not None:
                        info.instanceCount = known.instance_count
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
        """Every GPU-instance profile of GPU `index` with remaining capacity and placements.

        A caller NVML refuses these reads to gets remaining None and the table's placements
        (none without a table); `notes()` says so.
        """
        h, out = self.handle(index), []
        model = self._model(index)
        for const, info, name in self._profiles(index):
            try:
                remaining = int(self.api.nvmlDeviceGetGpuInstanceRemainingCapacity(h, info.id))
                placements = self._placements(index, info.id)
            except pynvml.NVMLError as exc:
                if not _no_permission(exc):
                    raise self._error(exc, "nvmlDeviceGetGpuInstanceRemainingCapacity",
                                      f"read MIG capacity of GPU {index}") from exc
                known = model.profile_by_id(int(info.id)) if model else None
                remaining, placements = None, known.placements if known else []
                self._note(index, "MIG capacity and placements", "nvmlDeviceGetGpuInstance"
                           "RemainingCapacity", exc, "placements from the "
                           f"{model.key} table" if model else "none known")
            out.append(GiProfileInfo(
                name=name, profile_const=const, id=int(info.id),
                instance_count=int(info.instanceCount), remaining=remaining,
                memory_mb=int(info.memorySizeMB), sm_count=int(info.multiprocessorCount),
                slice_count=int(info.sliceCount), placements=placements,
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
                key = (int(self.api.nvmlDeviceGetGpuInstanceId(mig)),
                       int(self.api.nvmlDeviceGetComputeInstanceId(mig)))
            except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
                continue  # an unused index (go-nvlib skips both), or destroyed meanwhile
            except pynvml.NVMLError as exc:
                raise self._error(exc, "nvmlDeviceGetMigDeviceHandleByIndex", what) from exc
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
            buf = (pynvml.c_nvmlGpuInstance_t * max(MAX_GPU_INSTANCES, info.instanceCount))()
            try:
                self.api.nvmlDeviceGetGpuInstances(h, info.id, buf, ctypes.byref(count))
            except pynvml.NVMLError as exc:
                if _no_permission(exc):
                    return self._instances_unprivileged(index, devices, exc)
                raise self._error(exc, "nvmlDeviceGetGpuInstances", what) from exc
            for k in range(count.value):
                try:
                    gi = self.api.nvmlGpuInstanceGetInfo(buf[k])
                except (pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound):
                    continue  # destroyed since the listing (listings can lag)
                except pynvml.NVMLError as exc:
                    raise self._error(exc, "nvmlGpuInstanceGetInfo", what) from exc
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

    def _instances_unprivileged(self, index: int, devices: dict[tuple[int, int], Any],
                                exc: pynvml.NVMLError) -> list[MigInstance]:
        """MIG devices as an unprivileged caller sees them: ids, profile (from the device name),
        memory and UUID; the placement stays unknown (placement_start -1)."""
        what = f"list MIG devices of GPU {index}"
        model = self._model(index)
        self._note(index, "GPU-instance placements", "nvmlDeviceGetGpuInstances", exc,
                   "MIG devices listed without placements")
        out = []
        for (gi_id, ci_id), mig in sorted(devices.items()):
            label = _text(self._call("nvmlDeviceGetName", what, mig)).rpartition(" MIG ")[2]
            profile = label.split(".", 1)[1] if label.count(".") > 1 else label  # 1c.3g.40gb
            known = model.profile(profile) if model and model.has_profile(profile) else None
            out.append(MigInstance(
                gpu_index=index, gi_id=gi_id, ci_id=ci_id, profile=profile, placement_start=-1,
                placement_size=known.placement_size if known else 0,
                uuid=_text(self._call("nvmlDeviceGetUUID", what, mig)),
                memory_bytes=int(self._call("nvmlDeviceGetMemoryInfo", what, mig).total)))
        return out

    def gpu_instance_exists(self, index: int, gi_id: int) -> bool:
        """Whether GPU instance `gi_id` exists, asked by id (listings can lag a change)."""
        try:
            self.api.nvmlDeviceGetGpuInstanceById(self.handle(index), gi_id)
        except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
            return False
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlDeviceGetGpuInstanceById",
                              f"look up GPU instance {gi_id} on GPU {index}") from exc
        return True

    def topology(self) -> Topology:
        gpus = self.gpus()
        return Topology(
            backend=self.backend,
            driver=_text(self._call("nvmlSystemGetDriverVersion", "read the driver version")),
            nvml_version=_text(self._call("nvmlSystemGetNVMLVersion", "read the NVML version")),
            gpus=gpus, instances={g.index: self.instances(g.index) for g in gpus},
            state_path=str(getattr(self.api, "state_path", "")) or None, notes=self.notes())

    # -- create / destroy (never MIG mode itself) -----------------------------------------

    def _require_mig(self, index: int) -> GpuInfo:
        gpu = self.gpu(index)
        if gpu.mig_current and not gpu.mig_pending:
            raise GpuError(pending_text(gpu))
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
            ci_info = self._full_ci_profile(gi, slices)
            ci = self.api.nvmlGpuInstanceCreateComputeInstance(gi, ci_info.id)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlGpuInstanceCreateComputeInstance", what) from exc
        ci_id = int(self._call("nvmlComputeInstanceGetInfo", what, ci).id)
        mig = None
        for attempt in range(RETRIES):  # a new MIG device may be listed a moment later
            mig = self._mig_devices(index).get((gi_id, ci_id))
            if mig is not None:
                break
            time.sleep(RETRY_S * (attempt + 1))
        if mig is None:
            raise GpuError(f"compute instance {ci_id} was created in GPU instance {gi_id} of GPU "
                           f"{index}, but NVML lists no MIG device for it; check nvidia-smi -L "
                           f"and remove it with sudo nvidia-smi mig -i {index} -gi {gi_id} -dci")
        return ci_id, _text(self._call("nvmlDeviceGetUUID", what, mig))

    def _full_ci_profile(self, gi: Any, slices: int) -> Any:
        """The compute-instance profile filling a `slices`-slice GPU instance: all its slices,
        most SMs (H100's 1g.20gb: NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1, not 1_SLICE)."""
        best = None
        for const in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                info = self._profile_info("ci", "nvmlGpuInstanceGetComputeInstanceProfileInfo",
                                          gi, const,
                                          pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                continue
            if info.sliceCount == slices and (
                    best is None or info.multiprocessorCount > best.multiprocessorCount):
                best = info
        if best is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return best

    def _destroy(self, fn: str, destroy: Callable[[], Any]) -> None:
        """destroy(); an IN_USE is retried briefly (another NVML client may let go)."""
        for attempt in range(RETRIES):
            try:
                destroy()
                return
            except pynvml.NVMLError_InUse:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(RETRY_S * (attempt + 1))

    def destroy_compute_instance(self, index: int, gi_id: int, ci_id: int) -> None:
        what = f"destroy compute instance {ci_id} of GPU instance {gi_id} on GPU {index}"
        gi = self._gi_handle(index, gi_id, what)
        try:
            ci = self.api.nvmlGpuInstanceGetComputeInstanceById(gi, ci_id)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlGpuInstanceGetComputeInstanceById", what) from exc
        try:
            self._destroy("nvmlComputeInstanceDestroy",
                          lambda: self.api.nvmlComputeInstanceDestroy(ci))
        except pynvml.NVMLError_InUse as exc:
            pids = [p.pid for p in self.processes_on(index, gi_id) if p.ci_id == ci_id]
            raise self._error(exc, "nvmlComputeInstanceDestroy", what,
                              f"processes {pids} still run on it; stop them first" if pids
                              else STRAY_IN_USE) from exc
        except pynvml.NVMLError as exc:
            raise self._error(exc, "nvmlComputeInstanceDestroy", what) from exc

    def destroy_gpu_instance(self, index: int, gi_id: int) -> None:
        what = f"destroy GPU instance {gi_id} on GPU {index}"
        gi = self._gi_handle(index, gi_id, what)
        try:
            self._destroy("nvmlGpuInstanceDestroy", lambda: self.api.nvmlGpuInstanceDestroy(gi))
        except pynvml.NVMLError_InUse as exc:
            cis = sorted(c for g, c in self._mig_devices(index) if g == gi_id)
            pids = [p.pid for p in self.processes_on(index, gi_id)]
            held = [f"processes {pids} run on it"] if pids else []
            held += [f"it has compute instances {cis}"] if cis else []
            raise self._error(exc, "nvmlGpuInstanceDestroy", what,
                              f"{' and '.join(held)}; stop the processes and destroy its "
                              "compute instances first" if held else STRAY_IN_USE) from exc
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
            mem_used, mem_total = self._memory(index, h)
            power = q("nvmlDeviceGetPowerUsage")
            clock = q("nvmlDeviceGetClockInfo", pynvml.NVML_CLOCK_SM)
            temp = q("nvmlDeviceGetTemperature", pynvml.NVML_TEMPERATURE_GPU)
        except pynvml.NVMLError as exc:
            raise self._error(exc, "telemetry", what) from exc
        return GpuMetrics(util_pct=None if util is None else int(util.gpu),
                          mem_used=mem_used, mem_total=mem_total,
                          power_w=None if power is None else power / 1000.0,
                          sm_clock_mhz=clock, temp_c=temp, simulated=self.simulated)

    def _memory(self, index: int, h: Any) -> tuple[int, int]:
        """(used, total) bytes of the whole GPU; in MIG mode without privileges the sum over
        its MIG devices (which NVML answers to anyone) and the total from gpu()."""
        try:
            mem = self.api.nvmlDeviceGetMemoryInfo(h)
            return int(mem.used), int(mem.total)
        except pynvml.NVMLError as exc:
            if not _no_permission(exc):
                raise
            self._note(index, "whole-GPU memory use", "nvmlDeviceGetMemoryInfo", exc,
                       "summed over its MIG devices")
        used = sum(int(self.api.nvmlDeviceGetMemoryInfo(m).used)
                   for m in self._mig_devices(index).values())
        return used, self.gpu(index).memory_total

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
