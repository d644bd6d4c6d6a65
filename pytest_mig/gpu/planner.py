"""Place a wanted set of MIG instances on a GPU model, or say in numbers why it cannot fit.

Rules, as NVML enforces them: each instance occupies `size` memory slices from one of its
profile's allowed starts, instances never share a memory slice, the compute slices add up
to at most the GPU's, and no profile exceeds its instance count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from pytest_mig.errors import LayoutError, did_you_mean
from pytest_mig.gpu.profiles import GpuModel, MigProfile


@dataclass(frozen=True)
class Placement:
    """One planned GPU instance: profile name and the memory slices [start, start+size)."""

    profile: str
    start: int
    size: int

    @property
    def slices(self) -> range:
        return range(self.start, self.start + self.size)


def _ordered(model: GpuModel, wanted: Mapping[str, int]) -> list[tuple[MigProfile, int]]:
    """Profiles of the request, largest first (memory size, then compute slices)."""
    items = [(model.profile(name), n) for name, n in wanted.items() if n]
    return sorted(items, key=lambda pn: (-pn[0].placement_size, -pn[0].slice_count, pn[0].name))


def describe_request(model: GpuModel, wanted: Mapping[str, int]) -> str:
    """'3g.40gb + 5 x 1g.10gb': the request in words, largest profile first."""
    parts = [p.name if n == 1 else f"{n} x {p.name}" for p, n in _ordered(model, wanted)]
    return " + ".join(parts) or "no instances"


def _validate(model: GpuModel, wanted: Mapping[str, int]) -> None:
    names = [p.name for p in model.profiles]
    for name, n in wanted.items():
        if not model.has_profile(name):
            raise LayoutError(f"{model.key} has no MIG profile '{name}'"
                              f"{did_you_mean(name, names)}; its profiles: {', '.join(names)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise LayoutError(f"count of {name} must be a whole number >= 0, got {n!r}")


def check_fits(model: GpuModel, wanted: Mapping[str, int]) -> None:
    """LayoutError with the arithmetic when counts alone rule the request out."""
    _validate(model, wanted)
    what = describe_request(model, wanted)
    for p, n in _ordered(model, wanted):
        if n > p.instance_count:
            raise LayoutError(f"{what}: {model.key} allows at most {p.instance_count} x "
                              f"{p.name}, not {n}")
    items = _ordered(model, wanted)
    compute = sum(p.slice_count * n for p, n in items)
    if compute > model.compute_slices:
        raise LayoutError(f"{what} needs {compute} of {model.compute_slices} compute slices "
                          f"on {model.key}")
    memory = sum(p.placement_size * n for p, n in items)
    if memory > model.memory_slices:
        raise LayoutError(f"{what} needs {memory} of {model.memory_slices} memory slices "
                          f"on {model.key}")


def _search(queue: Sequence[MigProfile], used: frozenset[int],
            prev_start: int) -> list[Placement] | None:
    """Depth-first: the first placement of `queue` (lowest starts first) or None."""
    if not queue:
        return []
    p, rest = queue[0], queue[1:]
    for start in p.placement_starts:
        if start <= prev_start:
            continue  # same profile as the previous item: only ascending starts
        cells = frozenset(range(start, start + p.placement_size))
        if cells & used:
            continue
        nxt = start if rest and rest[0] is p else -1
        tail = _search(rest, used | cells, nxt)
        if tail is not None:
            return [Placement(p.name, start, p.placement_size), *tail]
    return None


def plan(model: GpuModel, wanted: Mapping[str, int],
         occupied: Sequence[Placement] = ()) -> list[Placement]:
    """Placements for `wanted` (largest profiles first) around already `occupied` slices."""
    check_fits(model, wanted)
    queue = [p for p, n in _ordered(model, wanted) for _ in range(n)]
    used = frozenset(s for o in occupied for s in o.slices)
    found = _search(queue, used, -1)
    if found is None:
        starts = "; ".join(f"{p.name} starts at {','.join(map(str, p.placement_starts))} "
                           f"(size {p.placement_size})" for p, _ in _ordered(model, wanted))
        busy = f" with memory slices {sorted(used)} taken" if used else ""
        raise LayoutError(f"{describe_request(model, wanted)} fits the slice counts of "
                          f"{model.key} but no placement exists{busy}: {starts}")
    return found


def plan_case(model: GpuModel, main_profile: str, background_count: int) -> dict[str, int]:
    """The main's profile plus up to `background_count` more of it, as many as fit."""
    _validate(model, {main_profile: 1})
    plan(model, {main_profile: 1})
    extra = 0
    for k in range(max(0, background_count), 0, -1):
        try:
            plan(model, {main_profile: 1 + k})
        except LayoutError:
            continue
        extra = k
        break
    return {main_profile: 1 + extra}


def memory_gib(model: GpuModel, profile: str) -> float:
    """GPU memory of one instance of `profile`, in GiB (as NVML reports it)."""
    return model.profile(profile).memory_mb / 1024


def fits_memory(model: GpuModel, profile: str, need_gib: float) -> bool:
    """Whether one instance of `profile` has at least `need_gib` GiB of GPU memory."""
    return memory_gib(model, profile) >= need_gib


def smallest_fitting(model: GpuModel, profiles: Sequence[str], need_gib: float) -> str | None:
    """Of `profiles`, the one with the least memory (then compute) holding `need_gib`; None if none."""
    _validate(model, {p: 1 for p in profiles})
    fitting = [model.profile(p) for p in profiles if fits_memory(model, p, need_gib)]
    if not fitting:
        return None
    return min(fitting, key=lambda p: (p.memory_mb, p.slice_count, p.name)).name


def layout_main_profile(model: GpuModel, wanted: Mapping[str, int]) -> str:
    """The profile the main of a layout case runs on: the layout's largest (compute, then
    memory), so the main is never the smallest slice of a mixed layout."""
    _validate(model, wanted)
    return max((model.profile(p) for p, n in wanted.items() if n),
               key=lambda p: (p.slice_count, p.memory_mb, p.name)).name
