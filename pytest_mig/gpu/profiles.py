"""MIG profile tables per GPU model (fixtures/gpus/<model>.yaml) as typed values.

The simulator answers NVML profile queries from these tables and the planner places
instances with them; the H100 table equals a real capture (see its `source:`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from pytest_mig.datadir import data_path
from pytest_mig.errors import GpuError, did_you_mean
from pytest_mig.yamlload import safe_load

MIB = 1024 * 1024
PROFILE_FIELDS = ("name", "profile_const", "id", "instance_count", "memory_mb", "sm_count",
                  "slice_count", "ce", "dec", "enc", "jpeg", "ofa", "placements")
MODEL_FIELDS = ("source", "model", "nvml_name", "pci_device_id", "memory_total", "total_sms",
                "compute_slices", "memory_slices", "profiles")
SIM_FIELDS = ("power_idle_w", "power_max_w", "sm_clock_idle_mhz", "sm_clock_max_mhz",
              "mem_clock_mhz", "temp_idle_c", "temp_max_c", "gpm")


class ProfileTableError(GpuError):
    """A GPU profile table (fixtures/gpus/<model>.yaml) is malformed."""


def default_gpu_dir() -> Path:
    """gpus/ of the packaged data, or of $PYTEST_MIG_DATA when it has one (datadir.py)."""
    return data_path("gpus")


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile as NVML describes it; placements count memory slices."""

    name: str  # "1g.10gb"
    profile_const: int  # NVML_GPU_INSTANCE_PROFILE_* index
    id: int  # NVML profile id (the one nvidia-smi -cgi takes)
    instance_count: int
    memory_mb: int
    sm_count: int
    slice_count: int  # compute slices
    ce: int
    dec: int
    enc: int
    jpeg: int
    ofa: int
    placement_starts: tuple[int, ...]
    placement_size: int  # memory slices one instance occupies
    p2p: bool = False

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * MIB

    @property
    def placements(self) -> list[tuple[int, int]]:
        return [(s, self.placement_size) for s in self.placement_starts]

    @property
    def nvml_name(self) -> str:
        return f"MIG {self.name}"


NVML_QUIRKS = ("instance_count",)


@dataclass(frozen=True)
class SimFigures:
    """Nominal board figures that only the simulator's metric model uses."""

    power_idle_w: float = 50.0
    power_max_w: float = 400.0
    sm_clock_idle_mhz: int = 210
    sm_clock_max_mhz: int = 1410
    mem_clock_mhz: int = 1593
    temp_idle_c: int = 32
    temp_max_c: int = 70
    gpm: int = 0  # 1: the model answers NVML's GPM calls (Hopper and later)


@dataclass(frozen=True)
class GpuModel:
    """One GPU model's identity and MIG geometry."""

    key: str  # file stem, e.g. "A100-SXM4-80GB"
    nvml_name: str  # what nvmlDeviceGetName returns
    pci_device_id: int  # nvmlDeviceGetPciInfo().pciDeviceId, e.g. 0x20B210DE
    memory_total: int  # bytes
    total_sms: int
    compute_slices: int
    memory_slices: int
    profiles: tuple[MigProfile, ...]
    source: str
    sim: SimFigures
    path: Path | None = None
    # NVML answers known to be wrong on this model, where the table wins: "instance_count"
    # (the A30's profile info; NVIDIA/mig-parted hard-codes the A30 profiles for it).
    nvml_quirks: tuple[str, ...] = ()
    memory_bandwidth_gbs: float | None = None  # peak HBM GB/s (the LLM's decode roofline)

    def profile(self, name: str) -> MigProfile:
        """The profile called `name`; GpuError with did-you-mean when there is none."""
        for p in self.profiles:
            if p.name == name:
                return p
        names = [p.name for p in self.profiles]
        raise GpuError(f"{self.key} has no MIG profile '{name}'{did_you_mean(name, names)}; "
                       f"its profiles: {', '.join(names)}")

    def has_profile(self, name: str) -> bool:
        return any(p.name == name for p in self.profiles)

    def profile_by_id(self, profile_id: int) -> MigProfile | None:
        return next((p for p in self.profiles if p.id == profile_id), None)

    def profile_by_const(self, const: int) -> MigProfile | None:
        return next((p for p in self.profiles if p.profile_const == const), None)


def profile_fraction(model: GpuModel, profile: str | MigProfile) -> tuple[float, int]:
    """(share of the GPU's SMs, memory bytes) of a MIG profile: what an MPS share should get."""
    p = model.profile(profile) if isinstance(profile, str) else profile
    return p.sm_count / model.total_sms, p.memory_bytes


# -- loading ---------------------------------------------------------------------------

def _fail(path: Path, key: str, message: str) -> ProfileTableError:
    return ProfileTableError(f"{path}: key '{key}': {message} (fix the GPU profile table)")


def _int(path: Path, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise _fail(path, key, f"expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _fail(path, key, f"expected a number >= 0, got {value!r}")
    return float(value)


def _mapping(path: Path, key: str, value: Any, required: tuple[str, ...],
             optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected a mapping, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise _fail(path, key, f"missing {', '.join(missing)}")
    allowed = set(required) | set(optional)
    for k in value:
        if k not in allowed:
            raise _fail(path, f"{key}.{k}" if key else str(k), f"unknown key"
                        f"{did_you_mean(k, allowed)}; allowed: {', '.join(sorted(allowed))}")
    return value


def _profile(path: Path, key: str, raw: Any, memory_slices: int) -> MigProfile:
    d = _mapping(path, key, raw, PROFILE_FIELDS, ("p2p",))
    name = d["name"]
    if not isinstance(name, str) or not name:
        raise _fail(path, f"{key}.name", "expected a profile name such as 1g.10gb")
    key = f"{key} ({name})"
    pl = _mapping(path, f"{key}.placements", d["placements"], ("starts", "size"))
    size = _int(path, f"{key}.placements.size", pl["size"], 1)
    starts = pl["starts"]
    if not isinstance(starts, list) or not starts:
        raise _fail(path, f"{key}.placements.starts", "expected a non-empty list of slice indexes")
    starts_t = tuple(_int(path, f"{key}.placements.starts", s) for s in starts)
    bad = [s for s in starts_t if s + size > memory_slices]
    if bad:
        raise _fail(path, f"{key}.placements", f"start {bad[0]} + size {size} exceeds the "
                    f"{memory_slices} memory slices")
    ints = {f: _int(path, f"{key}.{f}", d[f]) for f in PROFILE_FIELDS
            if f not in ("name", "placements")}
    for f in ("instance_count", "memory_mb", "sm_count", "slice_count"):
        if ints[f] < 1:
            raise _fail(path, f"{key}.{f}", f"must be >= 1, got {ints[f]}")
    return MigProfile(name=name, placement_starts=starts_t, placement_size=size,
                      p2p=bool(d.get("p2p", False)), **ints)


def load_model_file(path: Path | str) -> GpuModel:
    """Read and validate one fixtures/gpus/<model>.yaml."""
    path = Path(path)
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProfileTableError(f"{path}: cannot read GPU profile table: {exc}") from exc
    d = _mapping(path, "", raw, MODEL_FIELDS, ("sim", "nvml_quirks", "memory_bandwidth_gbs"))
    if d["model"] != path.stem:
        raise _fail(path, "model", f"'{d['model']}' must equal the file name '{path.stem}'")
    for k in ("source", "nvml_name"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise _fail(path, k, "expected a non-empty string")
    nums = {k: _int(path, k, d[k], 1) for k in
            ("pci_device_id", "memory_total", "total_sms", "compute_slices", "memory_slices")}
    if not isinstance(d["profiles"], list) or not d["profiles"]:
        raise _fail(path, "profiles", "expected a non-empty list")
    profiles = tuple(_profile(path, f"profiles[{i}]", p, nums["memory_slices"])
                     for i, p in enumerate(d["profiles"]))
    for p in profiles:
        if p.slice_count > nums["compute_slices"]:
            raise _fail(path, f"profiles ({p.name}).slice_count", f"{p.slice_count} exceeds the "
                        f"{nums['compute_slices']} compute slices")
    for attr in ("name", "id", "profile_const"):
        seen: set[object] = set()
        for p in profiles:
            if getattr(p, attr) in seen:
                raise _fail(path, "profiles", f"duplicate {attr} {getattr(p, attr)!r}")
            seen.add(getattr(p, attr))
    sim_raw = _mapping(path, "sim", d.get("sim") or {}, (), SIM_FIELDS)
    sim = SimFigures(**{k: _number(path, f"sim.{k}", v) if k.startswith("power")
                        else _int(path, f"sim.{k}", v) for k, v in sim_raw.items()})
    quirks = d.get("nvml_quirks") or []
    if not isinstance(quirks, list) or not set(quirks) <= set(NVML_QUIRKS):
        raise _fail(path, "nvml_quirks", f"expected a list of {', '.join(NVML_QUIRKS)}, got "
                    f"{quirks!r}")
    bandwidth = d.get("memory_bandwidth_gbs")
    if bandwidth is not None:
        bandwidth = _number(path, "memory_bandwidth_gbs", bandwidth)
        if bandwidth <= 0:
            raise _fail(path, "memory_bandwidth_gbs", f"expected a positive number of GB/s, got {bandwidth}")
    return GpuModel(key=path.stem, nvml_name=d["nvml_name"].strip(), profiles=profiles,
                    source=" ".join(d["source"].split()), sim=sim, path=path,
                    nvml_quirks=tuple(quirks), memory_bandwidth_gbs=bandwidth, **nums)


@functools.lru_cache(maxsize=8)
def _load_dir(directory: Path) -> dict[str, GpuModel]:
    if not directory.is_dir():
        raise ProfileTableError(f"GPU profile tables not found: {directory} is not a directory")
    return {f.stem: load_model_file(f) for f in sorted(directory.glob("*.yaml"))}


def load_models(directory: Path | str | None = None) -> dict[str, GpuModel]:
    """All tables of a directory (default: fixtures/gpus), keyed by model key."""
    return dict(_load_dir(Path(directory or default_gpu_dir()).resolve()))


def get_model(key: str, directory: Path | str | None = None) -> GpuModel:
    """The table of model `key`; GpuError with did-you-mean for an unknown key."""
    models = load_models(directory)
    if key not in models:
        where = Path(directory or default_gpu_dir())
        raise GpuError(f"unknown GPU model '{key}'{did_you_mean(key, models)}; known models "
                       f"(tables in {where}): {', '.join(models)}")
    return models[key]


def model_for_nvml_name(name: str, directory: Path | str | None = None) -> GpuModel | None:
    """The model whose NVML name is `name` (as nvmlDeviceGetName returns it), if any."""
    return next((m for m in load_models(directory).values() if m.nvml_name == name), None)


def model_for_pci_device_id(pci_device_id: int,
                            directory: Path | str | None = None) -> GpuModel | None:
    """The model with this PCI device id (vendor in the low 16 bits, e.g. 0x20B210DE)."""
    return next((m for m in load_models(directory).values()
                 if m.pci_device_id == pci_device_id), None)
