"""Plumbing of the NVML simulator: locked state transactions, handle lookups, MIG geometry,
the simulated caller's privilege, fault injection and the helpers tests use to change the
simulated GPU.

Privilege (always modelled, as on hardware; the state's `caller` says who calls):
- "root": everything answers.
- "mig-config": a non-root user granted the mig-config capability (MIG user guide, "Device
  Nodes and Capabilities"): every function nvml.h marks "Requires privileged user" answers,
  but whole-GPU memory and process queries on a GPU in MIG mode still answer
  NVML_ERROR_NO_PERMISSION (nvml.h: aggregate information "only if the caller has
  appropriate privileges"; that is monitoring, not configuring).
- "user": a plain non-root user: both of the above answer NVML_ERROR_NO_PERMISSION.

Faults (off unless a test switches them on with `set_faults`; each is seen on real nodes):
- stray_in_use: N -> the next N destroys answer NVML_ERROR_IN_USE though no process runs
  (another NVML client such as DCGM holds a handle; NVIDIA/DCGM issue 276).
- index_gaps -> nvmlDeviceGetMigDeviceHandleByIndex answers NVML_ERROR_INVALID_ARGUMENT at
  unused indexes inside the range (go-nvlib VisitMigDevices skips those as well as NOT_FOUND).
- stale_listing: N -> after a create or destroy the next N listing calls (GPU instances, MIG
  devices) still answer from before the change.
- wrong_instance_count -> GPU-instance profile info reports instanceCount 1 for every profile
  (NVML's A30 counts are wrong; NVIDIA/mig-parted hard-codes the A30 profiles for that).
- history_ids -> new GPU instances get ids from a rotating counter, not from their
  placement: the same layout gets different ids on different GPUs (NVIDIA/DCGM issue 138).
MIG mode pending (current != pending, a reset needed) is set with `set_mig_mode(pending=)`.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
from typing import Any, Iterator

import pynvml

from pytest_mig.errors import GpuError
from pytest_mig.gpu.profiles import GpuModel, MigProfile, get_model
from pytest_mig.gpu.sim.state import State, StateFile

MIB = 1024 * 1024

# Handles are pynvml's own pointer types holding an encoded (never dereferenced) address.
_TAG = 0x5EED
KIND_DEVICE, KIND_GI, KIND_CI, KIND_MIG = 1, 2, 3, 4
_PTR = {KIND_DEVICE: pynvml.c_nvmlDevice_t, KIND_MIG: pynvml.c_nvmlDevice_t,
        KIND_GI: pynvml.c_nvmlGpuInstance_t, KIND_CI: pynvml.c_nvmlComputeInstance_t}


def make_handle(kind: int, gpu: int, gi: int = 0, ci: int = 0) -> Any:
    addr = (_TAG << 40) | (kind << 36) | (gpu << 24) | (gi << 12) | ci
    return ctypes.cast(ctypes.c_void_p(addr), _PTR[kind])


def decode_handle(handle: Any) -> tuple[int, int, int, int]:
    """(kind, gpu, gi, ci) of a simulator handle; INVALID_ARGUMENT for anything else."""
    try:
        addr = ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        addr = None
    if not addr or addr >> 40 != _TAG:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return (addr >> 36) & 0xF, (addr >> 24) & 0xFFF, (addr >> 12) & 0xFFF, addr & 0xFFF


CALLERS = ("root", "mig-config", "user")
FAULTS = {"stray_in_use": int, "index_gaps": bool, "stale_listing": int,
          "wrong_instance_count": bool, "history_ids": bool}
# nvml.h: "Requires privileged user" (root, or the mig-config capability).
PRIVILEGED = frozenset({
    "nvmlDeviceGetGpuInstancePossiblePlacements_v2", "nvmlDeviceGetGpuInstanceRemainingCapacity",
    "nvmlDeviceCreateGpuInstance", "nvmlDeviceCreateGpuInstanceWithPlacement",
    "nvmlGpuInstanceDestroy", "nvmlDeviceGetGpuInstances", "nvmlDeviceGetGpuInstanceById",
    "nvmlGpuInstanceCreateComputeInstance", "nvmlComputeInstanceDestroy",
    "nvmlGpuInstanceGetComputeInstances", "nvmlGpuInstanceGetComputeInstanceById"})


def check_caller(caller: str) -> str:
    if caller not in CALLERS:
        raise GpuError(f"unknown simulated caller '{caller}'; choose one of {', '.join(CALLERS)}")
    return caller


def gpu_instance_id(model: GpuModel, start: int, size: int) -> int:
    """GI id of a placement: its node in the binary tree of memory slices.

    On an 8-slice GPU: 7g -> 0, half GPU -> 1..2, quarters -> 3..6, eighths -> 7..14;
    real drivers also number GIs by placement, e.g. 1g instances get 7 and up.
    """
    return model.memory_slices // size - 1 + start // size


def occupied(gpu: dict) -> set[int]:
    return {s for gi in gpu["gpu_instances"] for s in range(gi["start"], gi["start"] + gi["size"])}


def remaining(gpu: dict, model: GpuModel, p: MigProfile, at: int | None = None) -> int:
    """How many more instances of `p` fit (only at start `at` when given).

    With MIG disabled NVML reports the capacity of an empty GPU, as the real capture shows.
    """
    gis = gpu["gpu_instances"] if gpu["mig_current"] else []
    left = p.instance_count - sum(1 for gi in gis if gi["profile_id"] == p.id)
    compute = model.compute_slices - sum(model.profile_by_id(gi["profile_id"]).slice_count
                                         for gi in gis)
    used = occupied(gpu) if gpu["mig_current"] else set()
    placeable = 0
    for start in ([at] if at is not None else p.placement_starts):
        cells = set(range(start, start + p.placement_size))
        if used.isdisjoint(cells):
            placeable += 1
            used |= cells
    return max(0, min(left, compute // p.slice_count, placeable))


def lowest_free_start(gpu: dict, model: GpuModel, p: MigProfile) -> int | None:
    """Where NVML would put a new instance of `p` without a placement: the lowest free start."""
    if remaining(gpu, model, p) == 0:
        return None
    used = occupied(gpu)
    return next(s for s in p.placement_starts
                if used.isdisjoint(range(s, s + p.placement_size)))


def _out(ref: Any) -> Any:
    """The c_uint behind byref(x), pointer(x) or x."""
    obj = getattr(ref, "_obj", ref)
    if isinstance(obj, ctypes._Pointer):
        obj = obj.contents
    if not hasattr(obj, "value"):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return obj


def _array(ref: Any) -> tuple[Any, int | None]:
    """(indexable buffer, capacity or None) behind an array, byref(array) or pointer."""
    obj = getattr(ref, "_obj", ref)
    if isinstance(obj, ctypes.Array):
        return obj, len(obj)
    if isinstance(obj, ctypes._Pointer):
        return obj, None
    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)


def fill_list(buffer_ref: Any, count_ref: Any, items: list[Any]) -> int:
    """NVML's list protocol: count always returned; buffer None asks only for the count."""
    count = _out(count_ref)
    if buffer_ref is None:
        count.value = len(items)
        return pynvml.NVML_SUCCESS
    buf, capacity = _array(buffer_ref)
    # Real NVML cannot check (count is output only) and writes past a short buffer; the
    # simulator refuses it, so such a caller bug fails a test instead of corrupting memory.
    if capacity is not None and capacity < len(items):
        count.value = len(items)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
    for i, item in enumerate(items):
        buf[i] = item
    count.value = len(items)
    return pynvml.NVML_SUCCESS


def error_code(code: int | str) -> int:
    """15, 'GPU_IS_LOST' or 'NVML_ERROR_GPU_IS_LOST' -> 15."""
    if isinstance(code, int):
        return code
    name = str(code).upper()
    name = name if name.startswith("NVML_ERROR_") else f"NVML_ERROR_{name}"
    if not hasattr(pynvml, name):
        raise GpuError(f"unknown NVML error '{code}' for fail_next; use a name such as "
                       "GPU_IS_LOST or INSUFFICIENT_RESOURCES, or the numeric code")
    return int(getattr(pynvml, name))


class SimBase:
    """State transactions and lookups shared by the simulated NVML functions."""

    _file: StateFile
    _init_count: int

    @contextlib.contextmanager
    def _tx(self, *functions: str, write: bool = False, needs_init: bool = True) -> Iterator[State]:
        """Lock, re-read, apply injected faults, yield the state, write it back if asked."""
        if needs_init and self._init_count <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        with self._file.locked():
            st = self._file.read()
            pending = st.get("fail_next") or {}
            for fn in functions:
                if fn in pending:
                    code = error_code(pending.pop(fn))
                    self._file.write(st)
                    raise pynvml.NVMLError(code)
            if any(fn in (st.get("missing_functions") or ()) for fn in functions):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            if st.get("caller", "root") == "user" and PRIVILEGED.intersection(functions):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
            yield st
            if write:
                self._file.write(st)

    @contextlib.contextmanager
    def _edit(self) -> Iterator[State]:
        """A test helper's change to the state (no init needed, no faults applied)."""
        with self._file.locked():
            st = self._file.read()
            yield st
            self._file.write(st)

    def _model(self, st: State, gpu: dict) -> GpuModel:
        return get_model(gpu["model"], st["gpu_dir"])

    def _decode(self, handle: Any) -> tuple[int, int, int, int]:
        return decode_handle(handle)

    def _gpu_at(self, st: State, index: int) -> dict:
        if not 0 <= index < len(st["gpus"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return st["gpus"][index]

    def _find_gi(self, gpu: dict, gi_id: int) -> dict:
        gi = next((g for g in gpu["gpu_instances"] if g["id"] == gi_id), None)
        if gi is None:  # destroyed meanwhile: the handle is stale
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gi

    def _find_ci(self, gi: dict, ci_id: int) -> dict:
        ci = next((c for c in gi["compute_instances"] if c["id"] == ci_id), None)
        if ci is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ci

    def _device(self, st: State, handle: Any, mig_ok: bool = False) -> dict:
        """The physical GPU of a device handle; a MIG handle is NOT_SUPPORTED here."""
        kind, index, _, _ = self._decode(handle)
        if kind == KIND_MIG and not mig_ok:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if kind not in (KIND_DEVICE, KIND_MIG):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._gpu_at(st, index)

    def _any_device(self, st: State, handle: Any) -> tuple[dict, dict | None, dict | None]:
        """(gpu, gi, ci) of a device or MIG device handle (gi, ci None for a device)."""
        kind, index, gi_id, ci_id = self._decode(handle)
        gpu = self._device(st, handle, mig_ok=True)
        if kind == KIND_DEVICE:
            return gpu, None, None
        gi = self._find_gi(gpu, gi_id)
        return gpu, gi, self._find_ci(gi, ci_id)

    def _mig(self, st: State, handle: Any) -> tuple[dict, dict, dict]:
        gpu, gi, ci = self._any_device(st, handle)
        if gi is None or ci is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu, gi, ci

    def _gi(self, st: State, handle: Any) -> tuple[dict, dict]:
        kind, index, gi_id, _ = self._decode(handle)
        if kind != KIND_GI:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpu_at(st, index)
        return gpu, self._find_gi(gpu, gi_id)

    def _ci(self, st: State, handle: Any) -> tuple[dict, dict, dict]:
        kind, index, gi_id, ci_id = self._decode(handle)
        if kind != KIND_CI:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpu_at(st, index)
        gi = self._find_gi(gpu, gi_id)
        return gpu, gi, self._find_ci(gi, ci_id)

    def _profile(self, st: State, gpu: dict, profile_id: int) -> MigProfile:
        p = self._model(st, gpu).profile_by_id(int(profile_id))
        if p is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return p

    def _remaining(self, gpu: dict, model: GpuModel, p: MigProfile, at: int | None = None) -> int:
        return remaining(gpu, model, p, at)

    @staticmethod
    def _require_mig(gpu: dict) -> None:
        # nvml.h: "NVML_ERROR_NOT_SUPPORTED if device doesn't have MIG mode enabled"; a real
        # H100 with MIG disabled answered nvmlDeviceCreateGpuInstance so.
        if not gpu["mig_current"]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    @staticmethod
    def _require_monitor(st: State, gpu: dict, whole_gpu: bool) -> None:
        """Whole-GPU memory/process queries in MIG mode need root (nvml.h, "appropriate
        privileges"); per MIG device they answer anyone."""
        if whole_gpu and gpu["mig_current"] and st.get("caller", "root") != "root":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)

    @staticmethod
    def _fault(st: State, name: str) -> Any:
        return (st.get("faults") or {}).get(name)

    def _take_stray_in_use(self, st: State) -> None:
        """A destroy refused while another NVML client holds the instance (no process)."""
        left = int(self._fault(st, "stray_in_use") or 0)
        if left > 0:
            st["faults"]["stray_in_use"] = left - 1
            self._file.write(st)
            raise pynvml.NVMLError(pynvml.NVML_ERROR_IN_USE)

    def _before_change(self, st: State, gpu: dict) -> None:
        """Keep what listings show for `stale_listing` more calls after this change."""
        n = int(self._fault(st, "stale_listing") or 0)
        if n > 0 and not gpu.get("stale"):
            gpu["stale"] = {"left": n, "gpu_instances": copy.deepcopy(gpu["gpu_instances"])}

    def _listed(self, st: State, gpu: dict) -> list[dict]:
        """The GPU instances a listing call sees (stale for a while after a change)."""
        stale = gpu.get("stale")
        if not stale:
            return gpu["gpu_instances"]
        stale["left"] -= 1
        if stale["left"] <= 0:
            gpu.pop("stale")
        self._file.write(st)
        return stale["gpu_instances"]

    # -- helpers for tests (not NVML functions) ------------------------------------------

    def register_process(self, mig_uuid: str | None = None, *, gpu_index: int | None = None,
                         pid: int | None = None, used_memory: int = 512 * MIB) -> int:
        """Pretend a process runs on a MIG device (or on GPU `gpu_index` without MIG)."""
        with self._edit() as st:
            where: tuple[dict, int | None, int | None] | None = None
            for gpu in st["gpus"]:
                for gi in gpu["gpu_instances"]:
                    for ci in gi["compute_instances"]:
                        if ci["uuid"] == mig_uuid:
                            where = (gpu, gi["id"], ci["id"])
            if mig_uuid is None and gpu_index is not None:
                where = (self._gpu_at(st, gpu_index), None, None)
            if where is None:
                raise GpuError(f"no simulated MIG device {mig_uuid!r} (GPU index {gpu_index})")
            if pid is None:
                pid = st["next_pid"]
                st["next_pid"] += 1
            where[0]["processes"].append({"pid": pid, "gi_id": where[1], "ci_id": where[2],
                                          "used_memory": int(used_memory)})
            return pid

    def unregister_process(self, pid: int) -> None:
        with self._edit() as st:
            for gpu in st["gpus"]:
                gpu["processes"] = [p for p in gpu["processes"] if p["pid"] != pid]

    def set_mig_mode(self, gpu_index: int, enabled: bool, pending: bool | None = None) -> None:
        """Flip MIG mode at once (a test stand-in for `nvidia-smi -mig` plus a GPU reset);
        `pending` different from `enabled`: a mode change waits for the next GPU reset."""
        with self._edit() as st:
            gpu = self._gpu_at(st, gpu_index)
            if not enabled and gpu["gpu_instances"]:
                raise GpuError(f"simulated GPU {gpu_index} still has MIG instances; "
                               "destroy them first")
            gpu["mig_current"] = bool(enabled)
            gpu["mig_pending"] = bool(enabled if pending is None else pending)

    def replace_gpu_instance(self, gpu_index: int, gi_id: int, profile: str, start: int) -> None:
        """Someone else destroyed GPU instance `gi_id` and made a `profile` instance at `start`
        that the driver gave the same id (history-based ids reuse them)."""
        with self._edit() as st:
            gpu = self._gpu_at(st, gpu_index)
            model = self._model(st, gpu)
            old = self._find_gi(gpu, gi_id)
            gpu["gpu_instances"].remove(old)
            gpu["processes"] = [p for p in gpu["processes"] if p["gi_id"] != gi_id]
            p = model.profile(profile)
            if remaining(gpu, model, p, at=start) == 0:
                gpu["gpu_instances"].append(old)
                raise GpuError(f"{profile} does not fit at memory slice {start} of simulated GPU "
                               f"{gpu_index}")
            gpu["gpu_instances"].append({"id": gi_id, "profile_id": p.id, "start": start,
                                         "size": p.placement_size, "compute_instances": []})

    def set_faults(self, **faults: Any) -> None:
        """Switch faults on (or off with 0/False): see the module docstring."""
        with self._edit() as st:
            now = st.setdefault("faults", {})
            for name, value in faults.items():
                if name not in FAULTS:
                    raise GpuError(f"unknown simulator fault '{name}'; choose from "
                                   f"{', '.join(FAULTS)}")
                now[name] = FAULTS[name](value)

    def inject_failure(self, function: str, code: int | str) -> None:
        """The next call of `function` raises NVMLError(code) once."""
        with self._edit() as st:
            st.setdefault("fail_next", {})[function] = error_code(code)

    def configure(self, *, caller: str | None = None,
                  missing_functions: list[str] | None = None) -> None:
        """Who calls (root, mig-config, user), or an older driver lacking some functions."""
        with self._edit() as st:
            if caller is not None:
                st["caller"] = check_caller(caller)
            if missing_functions is not None:
                st["missing_functions"] = list(missing_functions)

    def state(self) -> State:
        """A copy of the current state (for tests and debugging)."""
        with self._file.locked():
            return self._file.read()
