"""Typed answers of the NVML wrapper: GPUs, MIG profiles and instances, metrics, topology."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuInfo:
    """One physical GPU as NVML reports it."""

    index: int
    name: str  # NVML name, e.g. "NVIDIA H100 80GB HBM3"
    uuid: str  # "GPU-..."
    model_key: str | None  # fixtures/gpus key, None for a model without a table
    pci_device_id: int  # e.g. 0x233010DE
    memory_total: int  # bytes
    mig_current: bool
    mig_pending: bool

    @property
    def label(self) -> str:
        return self.model_key or self.name


@dataclass(frozen=True)
class GiProfileInfo:
    """A GPU-instance profile on one GPU, with what is left of it right now."""

    name: str  # "1g.10gb"
    profile_const: int  # NVML_GPU_INSTANCE_PROFILE_* index
    id: int  # NVML profile id
    instance_count: int
    remaining: int | None  # None: NVML refused the read to this caller
    memory_mb: int
    sm_count: int
    slice_count: int
    placements: list[tuple[int, int]] = field(default_factory=list)  # (start, size) memory slices
    ce: int = 0
    dec: int = 0
    enc: int = 0
    jpeg: int = 0
    ofa: int = 0


@dataclass(frozen=True)
class MigInstance:
    """A GPU instance with one compute instance: a MIG device (ci_id/uuid None without CI)."""

    gpu_index: int
    gi_id: int
    ci_id: int | None
    profile: str
    placement_start: int  # -1: unknown (NVML refused GPU-instance reads to this caller)
    placement_size: int
    uuid: str | None  # "MIG-..." for CUDA_VISIBLE_DEVICES
    memory_bytes: int


@dataclass(frozen=True)
class ProcessInfo:
    """A compute process NVML sees on a GPU or MIG device."""

    pid: int
    used_memory: int | None
    gi_id: int | None
    ci_id: int | None


@dataclass(frozen=True)
class GpuMetrics:
    """One telemetry sample of a GPU; None where NVML does not report the value (MIG mode)."""

    util_pct: int | None
    mem_used: int
    mem_total: int
    power_w: float | None
    sm_clock_mhz: int | None
    temp_c: int | None
    simulated: bool  # True: made up by the simulator, not measured


def layout_text(instances: list[MigInstance]) -> str:
    """'3g.40gb + 4 x 1g.10gb' (largest first), or 'no MIG instances'."""
    per_gi = {(i.gpu_index, i.gi_id): i for i in instances}
    counts = Counter(i.profile for i in per_gi.values())
    size = {i.profile: (i.placement_size, i.memory_bytes) for i in per_gi.values()}
    order = sorted(counts, key=lambda p: (-size[p][0], -size[p][1], p))
    return " + ".join(p if counts[p] == 1 else f"{counts[p]} x {p}" for p in order) \
        or "no MIG instances"


@dataclass
class Topology:
    """What one run talks to: backend, driver, GPUs and their MIG instances."""

    backend: str  # "nvml" | "simulated"
    driver: str
    nvml_version: str
    gpus: list[GpuInfo]
    instances: dict[int, list[MigInstance]]
    state_path: str | None = None  # the simulator's state file
    notes: list[str] = field(default_factory=list)  # what NVML refused to read (non-root)

    @property
    def simulated(self) -> bool:
        return self.backend == "simulated"

    def gpu_summary(self, gpu: GpuInfo) -> str:
        if gpu.mig_current:
            mig = "MIG enabled" + ("" if gpu.mig_pending else " (disabled after GPU reset)")
            return f"{gpu.label}, {mig}, layout {layout_text(self.instances.get(gpu.index, []))}"
        if gpu.mig_pending:
            return f"{gpu.label}, MIG disabled (enabled after GPU reset)"
        return f"{gpu.label}, MIG disabled"

    def describe(self) -> str:
        """The run header's GPU line(s); a simulated run says so first, in capitals."""
        if self.simulated:
            head = "GPU backend: SIMULATED NVML (no hardware)"
            tail = f" [simulator state {self.state_path}]"
        else:
            head = f"GPU backend: real NVML driver {self.driver} (NVML {self.nvml_version})"
            tail = ""
        if not self.gpus:
            return f"{head} - no GPUs{tail}"
        summaries = [self.gpu_summary(g) for g in self.gpus]
        if len(set(summaries)) == 1:
            lines = [f"{head} - {len(self.gpus)} x {summaries[0]}{tail}"]
        else:
            lines = [f"{head} - {len(self.gpus)} GPUs{tail}"]
            lines += [f"  GPU {g.index}: {s}" for g, s in zip(self.gpus, summaries)]
        lines += [f"  {n} - run as root or grant the mig-config capability to read it"
                  for n in self.notes]
        return "\n".join(lines)
