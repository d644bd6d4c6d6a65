"""The simulator's made-up telemetry: deterministic in time and in registered processes (and,
for the utilisation of a GPU without MIG, in the run's live workloads on it, as sim/gpm.py).

Nothing here is measured. Values only have to be plausible and repeatable so reports and
plots can be exercised without hardware; every consumer labels them as simulated.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import pynvml

from pytest_mig.gpu.profiles import GpuModel

PERIOD_S = 30.0  # one slow wave per 30 s keeps consecutive samples different


def wave(t: float) -> float:
    """0..1, periodic in time."""
    return 0.5 + 0.5 * math.sin(2.0 * math.pi * t / PERIOD_S)


def activity(gpu: Mapping[str, Any], model: GpuModel, live: float = 0.0) -> float:
    """Busy share of the GPU, 0..1: compute slices of MIG devices with a process on them;
    without MIG, 0.6 per registered process plus `live` (the run's workloads on the GPU)."""
    procs = gpu.get("processes") or []
    if not gpu.get("mig_current"):
        return min(1.0, 0.6 * len(procs) + live)
    if not procs:
        return 0.0
    busy = {(p["gi_id"], p["ci_id"]) for p in procs}
    slices = sum(ci["size"] for gi in gpu["gpu_instances"] for ci in gi["compute_instances"]
                 if (gi["id"], ci["id"]) in busy)
    return min(1.0, slices / model.compute_slices)


def utilization(load: float, t: float) -> tuple[int, int]:
    """(gpu %, memory-controller %)."""
    if load <= 0.0:
        return 0, 0
    w = wave(t)
    return round(load * (85 + 15 * w)), round(load * (40 + 20 * w))


def power_mw(model: GpuModel, load: float, t: float) -> int:
    s = model.sim
    return round(1000 * (s.power_idle_w + (s.power_max_w - s.power_idle_w)
                         * load * (0.75 + 0.25 * wave(t))))


def sm_clock_mhz(model: GpuModel, load: float) -> int:
    return model.sim.sm_clock_max_mhz if load > 0.0 else model.sim.sm_clock_idle_mhz


def temperature_c(model: GpuModel, load: float, t: float) -> int:
    s = model.sim
    return round(s.temp_idle_c + (s.temp_max_c - s.temp_idle_c) * load * (0.8 + 0.2 * wave(t)))


class TelemetryMixin:
    """NVML telemetry calls of the simulator, answered from the functions above."""

    _clock: Callable[[], float]

    def _live(self, gpu: Mapping[str, Any]) -> float:
        """The run's live workloads on a GPU without MIG (sim/gpm.py's scan), each busy."""
        scan = getattr(self, "_workloads", None)
        if scan is None or gpu.get("mig_current"):
            return 0.0
        return float(sum(n for dev, n in scan().items() if dev == gpu["uuid"]))

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        with self._tx("nvmlDeviceGetUtilizationRates") as st:
            gpu = self._device(st, handle, mig_ok=False)
            if gpu["mig_current"]:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # as real NVML in MIG mode
            util = pynvml.c_nvmlUtilization_t()
            load = activity(gpu, self._model(st, gpu), self._live(gpu))
            util.gpu, util.memory = utilization(load, self._clock())
            return util

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        with self._tx("nvmlDeviceGetPowerUsage") as st:
            gpu = self._device(st, handle, mig_ok=False)
            model = self._model(st, gpu)
            return power_mw(model, activity(gpu, model), self._clock())

    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        with self._tx("nvmlDeviceGetClockInfo") as st:
            gpu = self._device(st, handle, mig_ok=False)
            model = self._model(st, gpu)
            if clock_type in (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM):
                return sm_clock_mhz(model, activity(gpu, model))
            if clock_type == pynvml.NVML_CLOCK_MEM:
                return model.sim.mem_clock_mhz
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        with self._tx("nvmlDeviceGetTemperature") as st:
            gpu = self._device(st, handle, mig_ok=False)
            if sensor != pynvml.NVML_TEMPERATURE_GPU:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            model = self._model(st, gpu)
            return temperature_c(model, activity(gpu, model), self._clock())
