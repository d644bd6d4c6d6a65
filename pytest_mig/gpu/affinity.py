"""CPU placement: each workload of a GPU pinned to its own share of the CPU cores local to it.

Rules:
- The cores local to a GPU are NVML's CPU affinity of the GPU (nvmlDeviceGetCpuAffinity),
  intersected with the cores this process may use; where NVML gives none (the simulator has
  no such call; an old driver) every core this process may use stands in, and the source
  says so in words (never a bare exception name).
- The cores are split into contiguous, near-equal shares, one per workload of the GPU (the
  main first, then each background), in slot order. With fewer cores than workloads nothing
  is pinned (a no-op that says why, e.g. on a 2-core CI machine).
- Pinning is `os.sched_setaffinity` on the child right after it was spawned (before its
  interpreter has started any thread); everything it spawns later inherits the share.
No pytest here; the NVML API object is passed in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

WORD_BITS = 64


@dataclass(frozen=True)
class CpuPlan:
    """The cores of one GPU and the share of each workload (empty when not pinning)."""

    gpu_index: int
    cpus: tuple[int, ...]
    source: str  # where `cpus` came from
    shares: tuple[tuple[int, ...], ...] = ()  # index 0: main, i: background i
    note: str = ""  # why nothing is pinned, when so

    @property
    def pinning(self) -> bool:
        return bool(self.shares)


@dataclass
class Placement:
    """What one workload got, as recorded in its case's record.json."""

    name: str
    cpus: list[int] = field(default_factory=list)
    pinned: bool = False
    note: str = ""


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def gpu_local_cpus(api: Any, gpu_index: int) -> tuple[list[int], str]:
    """(cores local to the GPU that this process may use, where that came from)."""
    allowed = allowed_cpus()
    if not callable(getattr(api, "nvmlDeviceGetCpuAffinity", None)):
        return allowed, (f"all {len(allowed)} cores of this process (the GPU backend has no CPU "
                         "affinity: simulated GPU)")
    try:
        handle = api.nvmlDeviceGetHandleByIndex(gpu_index)
        words = max(1, -(-(max(allowed) + 1) // WORD_BITS))
        mask = api.nvmlDeviceGetCpuAffinity(handle, words)
    except Exception as exc:  # noqa: BLE001 - any NVML answer but a mask: fall back, say so
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return allowed, f"all {len(allowed)} cores of this process (NVML CPU affinity: {why})"
    local = {w * WORD_BITS + b for w, word in enumerate(mask) for b in range(WORD_BITS)
             if int(word) >> b & 1}
    mine = [c for c in allowed if c in local]
    if not mine:
        return allowed, (f"all {len(allowed)} cores of this process (NVML's affinity of GPU "
                         f"{gpu_index} holds none of them)")
    return mine, f"NVML CPU affinity of GPU {gpu_index}"


def split(cpus: list[int], n: int) -> list[tuple[int, ...]]:
    """`n` contiguous near-equal shares of `cpus` (the first shares get the remainder)."""
    base, extra = divmod(len(cpus), n)
    shares, at = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        shares.append(tuple(cpus[at:at + size]))
        at += size
    return shares


def plan(api: Any, gpu_index: int, workloads: int, enabled: bool = True) -> CpuPlan:
    """How the `workloads` of one GPU are placed; a plan that pins nothing says why."""
    cpus, source = gpu_local_cpus(api, gpu_index)
    if not enabled:
        return CpuPlan(gpu_index, tuple(cpus), source, note="not pinned: --mig-cpu-pinning=off")
    if len(cpus) < workloads:
        return CpuPlan(gpu_index, tuple(cpus), source, note=(
            f"not pinned: {len(cpus)} CPU core(s) for {workloads} workload(s) on GPU "
            f"{gpu_index} (fewer than one core each; {source})"))
    return CpuPlan(gpu_index, tuple(cpus), source, tuple(split(cpus, workloads)))


def pin(pid: int, name: str, cpus: tuple[int, ...]) -> Placement:
    """Pin a spawned child (every thread it has so far) to `cpus`; a child already gone is
    recorded, not raised."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    try:
        for tid in tids:
            os.sched_setaffinity(tid, cpus)
    except OSError as exc:
        return Placement(name, list(cpus), False, f"not pinned: {exc.strerror or exc}")
    return Placement(name, list(cpus), True, "")
