"""Per-slice activity without DCGM: NVML's GPU Performance Monitoring (GPM), Hopper and later.

nvmlGpmSampleGet samples a whole GPU, nvmlGpmMigSampleGet one GPU instance; a metric is
computed from two samples (nvmlGpmMetricsGet). Read here: SM utilisation, SM occupancy,
DRAM bandwidth utilisation and tensor activity, in percent.
Rules: a GPU without GPM (pre-Hopper, real or simulated, or an API object without the
functions) gives a reader whose `note` says `n/a: ...` and whose reads are empty,
never estimated; a failed read of one target gives None values for it. A value NVML answers
with NVML_SUCCESS but not finite (NaN, inf: seen for DRAM bandwidth on an H200) is None too,
and named once in `problems` (the timeline writes it as an error line). No pytest here.
"""
from __future__ import annotations

import math
from typing import Any

import pynvml

METRICS = {"sm_util_pct": "NVML_GPM_METRIC_SM_UTIL",
           "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
           "dram_bw_util_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
           "tensor_util_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL"}
IDS = {"sm_util_pct": 2, "sm_occupancy_pct": 3, "dram_bw_util_pct": 10, "tensor_util_pct": 5}


def _metric_ids() -> dict[str, int]:
    return {k: int(getattr(pynvml, name, IDS[k])) for k, name in METRICS.items()}


class GpmReader:
    """GPM metrics of one GPU's targets: {label: GPU instance id, or None for the whole GPU}."""

    def __init__(self, api: Any, gpu_index: int, targets: dict[str, int | None]) -> None:
        self.api, self.targets, self.note = api, dict(targets), ""
        self.problems: list[str] = []  # new since the last drain_problems()
        self._named: set[str] = set()
        self.ids = _metric_ids()
        self.prev: dict[str, Any] = {}
        try:
            self.handle = api.nvmlDeviceGetHandleByIndex(gpu_index)
            supported = bool(api.nvmlGpmQueryDeviceSupport(self.handle).isSupportedDevice)
        except AttributeError:
            supported, self.note = False, "n/a: this NVML answers no GPM"
        except Exception as exc:  # noqa: BLE001 - NVML_ERROR_NOT_SUPPORTED and the like
            supported, self.note = False, f"n/a: GPM unavailable ({type(exc).__name__}: {exc})"
        if not supported:
            self.note = self.note or "n/a: GPM not supported by this GPU (Hopper or later)"
            return
        for label in self.targets:
            self.prev[label] = self._take(label)

    @property
    def supported(self) -> bool:
        return not self.note

    def _take(self, label: str) -> Any:
        sample = self.api.nvmlGpmSampleAlloc()
        gi = self.targets[label]
        try:
            if gi is None:
                self.api.nvmlGpmSampleGet(self.handle, sample)
            else:
                self.api.nvmlGpmMigSampleGet(self.handle, gi, sample)
        except Exception:
            self.api.nvmlGpmSampleFree(sample)
            raise
        return sample

    def read(self) -> dict[str, dict[str, float | None]]:
        """Metrics over the interval since the previous read, per target (None: not read)."""
        out: dict[str, dict[str, float | None]] = {}
        if not self.supported:
            return out
        for label in self.targets:
            values: dict[str, float | None] = dict.fromkeys(self.ids)
            try:
                new = self._take(label)
            except Exception:  # noqa: BLE001 - one target unreadable: None values, keep going
                out[label] = values
                continue
            prev, self.prev[label] = self.prev.get(label), new
            if prev is not None:
                mg = pynvml.c_nvmlGpmMetricsGet_t()
                mg.version = pynvml.NVML_GPM_METRICS_GET_VERSION
                mg.numMetrics = len(self.ids)
                mg.sample1, mg.sample2 = prev, new
                for i, metric_id in enumerate(self.ids.values()):
                    mg.metrics[i].metricId = metric_id
                try:
                    self.api.nvmlGpmMetricsGet(mg)
                    for i, key in enumerate(self.ids):
                        if mg.metrics[i].nvmlReturn == 0:
                            values[key] = self._finite(label, key, float(mg.metrics[i].value))
                except Exception:  # noqa: BLE001 - as above
                    pass
                finally:
                    self.api.nvmlGpmSampleFree(prev)
            out[label] = values
        return out

    def _finite(self, label: str, key: str, value: float) -> float | None:
        if math.isfinite(value):
            return value
        text = (f"GPM {label} {key}: NVML answered {value} (NVML_SUCCESS) for some intervals; "
                "those cells are n/a and means skip them")
        if text not in self._named:
            self._named.add(text)
            self.problems.append(text)
        return None

    def drain_problems(self) -> list[str]:
        """Problems named since the last call (each distinct one once per reader)."""
        out, self.problems = self.problems, []
        return out

    def close(self) -> None:
        for sample in self.prev.values():
            try:
                self.api.nvmlGpmSampleFree(sample)
            except Exception:  # noqa: BLE001 - freeing at the end is best effort
                pass
        self.prev.clear()
