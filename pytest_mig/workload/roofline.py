"""The LLM decode's roofline figure: bytes read per decode step / step time, as a fraction of
the memory bandwidth of the slice the workload runs on.

Rules:
- The slice's bandwidth is its GPU's peak (`memory_bandwidth_gbs` of data/gpus/<model>.yaml,
  the one table of it) times the MIG profile's memory fraction (its placement size over the
  GPU's memory slices). Under MPS the share stands in for that profile and is given the same
  figure (MPS itself does not partition bandwidth); the whole GPU (no partition, or a run
  by hand) gets all of it.
- The plugin tells the child its partition in SLICE_ENV ("<kind>:<profile>"); without it the
  workload runs on the whole GPU.
- No GPU table for the device, or no bandwidth in it: no fraction (None), never a guess.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from pytest_mig.datadir import data_path
from pytest_mig.workload_contract import SLICE_ENV
from pytest_mig.yamlload import safe_load


@dataclass(frozen=True)
class SliceBandwidth:
    gbs: float  # GB/s the slice is credited with
    what: str  # how: "1g.18gb (mps): 1/8 of NVIDIA H200's 4800 GB/s"


def _table(device_name: str) -> Mapping | None:
    """The GPU table whose NVML name the device's name starts with (MIG devices add a suffix)."""
    for path in sorted(data_path("gpus").glob("*.yaml")):
        raw = safe_load(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and device_name.startswith(str(raw.get("nvml_name", "\0"))):
            return raw
    return None


def slice_bandwidth(device_name: str, environ: Mapping[str, str] = os.environ) -> SliceBandwidth | None:
    raw = _table(device_name)
    if raw is None or not raw.get("memory_bandwidth_gbs"):
        return None
    peak = float(raw["memory_bandwidth_gbs"])
    kind, _, profile = environ.get(SLICE_ENV, "").partition(":")
    if kind not in ("mig", "mps") or not profile:
        return SliceBandwidth(peak, f"whole {raw['nvml_name']}: {peak:g} GB/s")
    slices = int(raw["memory_slices"])
    for p in raw.get("profiles") or []:
        if p.get("name") == profile:
            size = int(p["placements"]["size"])
            return SliceBandwidth(peak * size / slices, f"{profile} ({kind}): {size}/{slices} of "
                                                        f"{raw['nvml_name']}'s {peak:g} GB/s")
    return None


def fraction(gbytes_per_s: float, bandwidth: SliceBandwidth | None) -> float | None:
    return None if bandwidth is None or not gbytes_per_s else round(gbytes_per_s / bandwidth.gbs, 4)
