"""A batch per slice: the GPU path's Offline batch from the slice's SMs and memory.

Rules: the table is data (`fixtures/gpu_batch.yaml`, one row per benchmark: the batch
that keeps a whole 132-SM GPU busy, a floor, and working memory per sample); the rule scales
the whole-GPU batch by the slice's share of SMs, rounds to the nearest power of two, keeps it
within [min_batch, full_gpu_batch], then within what `memory_fraction` of the slice's memory
holds. The slice is what the process sees: a MIG instance reports its own SMs and memory;
under CUDA MPS the SMs are CUDA_MPS_ACTIVE_THREAD_PERCENTAGE of the device's and the memory
CUDA_MPS_PINNED_DEVICE_MEM_LIMIT (the limits pytest-mig sets per share). An explicit batch
(--batch-size, the suites' batch_size) overrides all of this. `choose` is pure; `measure`
reads the device. Imports torch (lazily), yaml, pytest_mig.datadir and the workload contract only.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from pytest_mig.datadir import data_path
from pytest_mig.workload_contract import SLICE_ENV

TABLE = "gpu_batch.yaml"
MPS_SM_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
MPS_MEMORY_ENV = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}  # MPS limits: a bare number is MB


@dataclass(frozen=True)
class Slice:
    """What one workload's process has of a GPU."""

    sms: float
    device_sms: int
    memory_bytes: int
    source: str  # how it was found: "mig instance", "mps 12% of 132 SMs", "whole gpu"


@dataclass(frozen=True)
class Row:
    full_gpu_batch: int
    min_batch: int
    activation_mib: float


@dataclass(frozen=True)
class Table:
    reference_sms: int
    memory_fraction: float
    rows: Mapping[str, Row]


@dataclass(frozen=True)
class Choice:
    batch: int
    rule: str  # one line: how the batch was reached


def load_table(path: Path | None = None) -> Table:
    path = path or data_path(TABLE)
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    try:
        rows = {name: Row(int(r["full_gpu_batch"]), int(r["min_batch"]), float(r["activation_mib"]))
                for name, r in (raw.get("benchmarks") or {}).items()}
        return Table(int(raw["reference_sms"]), float(raw["memory_fraction"]), rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed batch table ({type(exc).__name__}: {exc}); each benchmark "
                         "needs full_gpu_batch, min_batch and activation_mib") from None


def nearest_power_of_two(value: float) -> int:
    return 1 if value <= 1 else 2 ** round(math.log2(value))


def choose(benchmark: str, piece: Slice, table: Table) -> Choice | None:
    """The batch for `benchmark` on `piece`; None when the table has no row for it."""
    row = table.rows.get(benchmark)
    if row is None:
        return None
    share = piece.sms / table.reference_sms
    scaled = nearest_power_of_two(row.full_gpu_batch * share)
    batch = max(row.min_batch, min(row.full_gpu_batch, scaled))
    fits = int(piece.memory_bytes * table.memory_fraction / (row.activation_mib * (1 << 20)))
    rule = (f"{row.full_gpu_batch} at {table.reference_sms} SMs x {piece.sms:g}/{table.reference_sms} SMs "
            f"({piece.source}) -> {batch}")
    if fits < batch:
        batch = max(1, fits)
        rule += f", memory {piece.memory_bytes / (1 << 30):.1f} GiB holds {fits} -> {batch}"
    return Choice(batch, rule)


def parse_memory_limit(value: str) -> int | None:
    """Bytes of an MPS pinned memory limit ('0=18000M', '18G', '0=1024'); None if unreadable."""
    for part in value.split(","):
        amount = part.split("=", 1)[-1].strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)B?", amount, re.IGNORECASE)
        if match:
            return int(float(match.group(1)) * UNITS[match.group(2).upper()])
    return None


def measure(device: Any, env: Mapping[str, str] | None = None) -> Slice:
    """The slice this process has of `device` (a CUDA torch.device)."""
    import torch

    env = os.environ if env is None else env
    props = torch.cuda.get_device_properties(device)
    told = env.get(SLICE_ENV, "")  # the plugin's "<kind>:<profile>", for the record
    sms, memory = props.multi_processor_count, int(props.total_memory)
    name = props.name or ""
    source = "mig instance" if "MIG" in name else "whole gpu"
    share = env.get(MPS_SM_ENV)
    if share:
        try:
            fraction = min(100.0, max(0.0, float(share))) / 100.0
        except ValueError:
            fraction = 1.0
        source = f"mps {fraction:.0%} of {sms} SMs" + (f", {told}" if told else "")
        limit = parse_memory_limit(env.get(MPS_MEMORY_ENV, ""))
        return Slice(sms * fraction, sms, min(memory, limit) if limit else memory, source)
    return Slice(float(sms), sms, memory, source)
