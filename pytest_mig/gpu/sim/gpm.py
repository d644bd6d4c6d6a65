"""The simulator's GPM (GPU Performance Monitoring) calls: what gpu/gpm.py's GpmReader asks of
NVML (nvmlGpmQueryDeviceSupport, nvmlGpmSampleAlloc/Free, nvmlGpmSampleGet,
nvmlGpmMigSampleGet, nvmlGpmMetricsGet), answered from the simulated activity.

Rules:
- Only models whose table says `sim: {gpm: 1}` (Hopper and later: H100, H200) support GPM;
  on the others nvmlGpmQueryDeviceSupport says isSupportedDevice = 0 and every sample call
  raises NVML_ERROR_NOT_SUPPORTED, as real NVML does on an A100, so `n/a` stays exercised.
- A sample records, for its target (a GPU instance, or the whole GPU), how many workloads
  run there: processes registered with the simulator plus the live processes of this run
  (environment PYTEST_MIG_RUN_ID equal to ours, PYTEST_MIG_SIMULATED_GPU set) whose
  CUDA_VISIBLE_DEVICES names one of its MIG devices (or the GPU itself).
- A metric over two samples is load x a made-up level (sim/metrics.py wave, phase-shifted per
  GPU instance), load = the mean busy share of the two samples. Idle targets read 0.
  Nothing here is measured; every consumer labels simulated values as simulated.
Samples live in this process (as real GPM samples live in the caller's memory).
"""
from __future__ import annotations

import ctypes
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pynvml

from pytest_mig.gpu.sim.metrics import wave

RUN_MARKER = "PYTEST_MIG_RUN_ID"  # the run's id in every workload's environment (process.py)
SIM_MARKER = "PYTEST_MIG_SIMULATED_GPU"  # set on simulated partitions (hetero_run.py)
SCAN_EVERY_S = 0.05  # /proc is read at most this often per process

# metric id -> (base %, swing %): level = base + swing x wave. Made up, shaped like a busy
# matmul (high SM and tensor activity, low occupancy and DRAM bandwidth).
LEVELS = {pynvml.NVML_GPM_METRIC_SM_UTIL: (82.0, 14.0),
          pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: (10.0, 8.0),
          pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: (12.0, 10.0),
          pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: (78.0, 15.0)}


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


# pids that can never be a run's workload: no run marker in their environment (which only
# changes at exec, and a child forked by a run already carries the marker), read once.
# Processes with a marker are read at every scan (a forked child execs into a workload).
_NOT_OURS: dict[str, bool] = {}


def live_workloads(run_id: str | None) -> Counter[str]:
    """CUDA_VISIBLE_DEVICES of this run's live workloads on simulated partitions, counted."""
    found: Counter[str] = Counter()
    if not run_id:
        return found
    me = str(os.getpid())
    pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    for pid in pids:
        if _NOT_OURS.get(pid):
            continue
        env = _environ(pid)
        device = env.get("CUDA_VISIBLE_DEVICES") if env.get(SIM_MARKER) else None
        if device and env.get(RUN_MARKER) == run_id:
            found[device] += 1
        elif RUN_MARKER not in env:  # no pytest-mig run's (kernel threads: empty): never is
            _NOT_OURS[pid] = True
    for gone in set(_NOT_OURS) - set(pids):
        del _NOT_OURS[gone]
    return found


class GpmMixin:
    """NVML's GPM calls for SimulatedNvml (needs its _tx, _device, _model, _find_gi)."""

    _clock: Any

    def _gpm_state(self) -> dict[str, Any]:
        if "_gpm" not in self.__dict__:
            self.__dict__["_gpm"] = {"buffers": {}, "samples": {}, "scan": (-1.0, Counter())}
        return self.__dict__["_gpm"]

    def _workloads(self) -> Counter[str]:
        g = self._gpm_state()
        at, seen = g["scan"]
        now = time.monotonic()
        if now - at > SCAN_EVERY_S:
            seen = live_workloads(os.environ.get(RUN_MARKER))
            g["scan"] = (now, seen)
        return seen

    def _gpm_gpu(self, st: Any, handle: Any) -> dict:
        gpu = self._device(st, handle, mig_ok=False)
        if not self._model(st, gpu).sim.gpm:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        with self._tx("nvmlGpmQueryDeviceSupport") as st:
            gpu = self._device(st, handle, mig_ok=False)
            support = pynvml.c_nvmlGpmSupport_t()
            support.version = pynvml.NVML_GPM_SUPPORT_VERSION
            support.isSupportedDevice = int(bool(self._model(st, gpu).sim.gpm))
            return support

    def nvmlGpmSampleAlloc(self) -> Any:
        buf = ctypes.create_string_buffer(16)
        sample = ctypes.cast(buf, pynvml.c_nvmlGpmSample_t)
        g = self._gpm_state()
        g["buffers"][ctypes.addressof(buf)] = buf
        return sample

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        key = _key(sample)
        g = self._gpm_state()
        if g["buffers"].pop(key, None) is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        g["samples"].pop(key, None)

    def _record(self, sample: Any, gpu: dict, gi_id: int | None) -> None:
        key = _key(sample)
        g = self._gpm_state()
        if key not in g["buffers"]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if gi_id is None:
            devices = {gpu["uuid"]}
            registered = len(gpu["processes"])
            gis = gpu["gpu_instances"]
            devices |= {ci["uuid"] for gi in gis for ci in gi["compute_instances"]}
        else:
            gi = self._find_gi(gpu, gi_id)
            devices = {ci["uuid"] for ci in gi["compute_instances"]}
            registered = sum(1 for p in gpu["processes"] if p["gi_id"] == gi_id)
        seen = self._workloads()
        live = sum(n for dev, n in seen.items() if dev in devices
                   or dev.removeprefix("MIG-") in devices)
        g["samples"][key] = (gpu["index"], gi_id, self._clock(), registered + live)

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        with self._tx("nvmlGpmSampleGet") as st:
            self._record(sample, self._gpm_gpu(st, handle), None)
            return sample

    def nvmlGpmMigSampleGet(self, handle: Any, gi_id: int, sample: Any) -> Any:
        with self._tx("nvmlGpmMigSampleGet") as st:
            gpu = self._gpm_gpu(st, handle)
            if not gpu["mig_current"]:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            self._record(sample, gpu, int(gi_id))
            return sample

    def nvmlGpmMetricsGet(self, mg: Any) -> Any:
        samples = self._gpm_state()["samples"]
        first, second = samples.get(_key(mg.sample1)), samples.get(_key(mg.sample2))
        if first is None or second is None or first[:2] != second[:2] or second[2] < first[2]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        _, gi_id, t, _ = second
        load = (min(first[3], 1) + min(second[3], 1)) / 2
        w = wave(t + 4.0 * (gi_id or 0))  # slices of one GPU do not move in step
        for i in range(mg.numMetrics):
            m = mg.metrics[i]
            level = LEVELS.get(m.metricId)
            if level is None:
                m.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            m.value = round(load * (level[0] + level[1] * w), 3)
            m.nvmlReturn = pynvml.NVML_SUCCESS
        return mg


def _key(sample: Any) -> int:
    return ctypes.cast(sample, ctypes.c_void_p).value or 0
