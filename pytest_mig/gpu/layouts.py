"""MIG layouts in NVIDIA mig-parted's config format, read as mig-parted writes them.

    version: v1
    mig-configs:
      <name>:
        - devices: all | [0, 1]            # GPU indexes
          device-filter: "0x20B210DE"      # optional: PCI device id(s) with vendor
          mig-enabled: true
          mig-devices: {"1g.10gb": 7}

As in mig-parted, every entry that selects a GPU applies to it in order, so the last
matching entry decides a GPU's layout.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pytest_mig.datadir import data_path
from pytest_mig.errors import LayoutError, did_you_mean
from pytest_mig.yamlload import safe_load

ENTRY_KEYS = ("devices", "device-filter", "mig-enabled", "mig-devices")
# mig-parted's profile names: [<c>c.]<g>g.<m>gb with optional +me, +gfx, +me.all, -me...
PROFILE_NAME = re.compile(r"^([1-9][0-9]*c\.)?[1-9][0-9]*g\.[1-9][0-9]*gb([+-][a-z][a-z.]*)*$")


def default_layout_dir() -> Path:
    """layouts/ of the packaged data, or of $PYTEST_MIG_DATA when it has one (datadir.py)."""
    return data_path("layouts")


@dataclass(frozen=True)
class LayoutEntry:
    """One list item of a mig-parted config."""

    devices: tuple[int, ...] | None  # None: all
    device_filter: tuple[int, ...] | None  # PCI device ids; None: any model
    mig_enabled: bool
    mig_devices: Mapping[str, int] = field(default_factory=dict)

    def selects(self, index: int, pci_device_id: int) -> bool:
        return ((self.devices is None or index in self.devices)
                and (self.device_filter is None or pci_device_id in self.device_filter))


@dataclass(frozen=True)
class Layout:
    """A named MIG layout: the entries of one `mig-configs` key."""

    name: str
    source: Path | None
    entries: tuple[LayoutEntry, ...]

    def entry_for(self, index: int, pci_device_id: int) -> LayoutEntry | None:
        """The entry that decides GPU `index` (the last one selecting it), or None."""
        chosen = None
        for entry in self.entries:
            if entry.selects(index, pci_device_id):
                chosen = entry
        return chosen

    def for_gpu(self, index: int, pci_device_id: int) -> dict[str, int] | None:
        """Wanted instances on that GPU; None when no entry selects it or MIG is to be off."""
        entry = self.entry_for(index, pci_device_id)
        if entry is None or not entry.mig_enabled:
            return None
        return {name: n for name, n in entry.mig_devices.items() if n}


def _fail(path: Path | str, key: str, message: str) -> LayoutError:
    return LayoutError(f"{path}: key '{key}': {message}")


def _pci_id(path: Path, key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip(), 16)
    except ValueError:
        raise _fail(path, key, f"'{value}' is not a PCI device id such as 0x20B210DE") from None


def _entry(path: Path, key: str, raw: Any) -> LayoutEntry:
    if not isinstance(raw, dict):
        raise _fail(path, key, "expected a mapping with devices, mig-enabled, mig-devices")
    for k in raw:
        if k not in ENTRY_KEYS:
            raise _fail(path, f"{key}.{k}", f"unknown key{did_you_mean(k, ENTRY_KEYS)}; "
                        f"allowed: {', '.join(ENTRY_KEYS)}")
    if "devices" not in raw:
        raise _fail(path, key, "missing 'devices' (all, or a list of GPU indexes)")
    devices = raw["devices"]
    if devices == "all":
        dev: tuple[int, ...] | None = None
    elif isinstance(devices, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                           and d >= 0 for d in devices):
        dev = tuple(devices)
    else:
        raise _fail(path, f"{key}.devices",
                    f"expected 'all' or a list of GPU indexes, got {devices!r}")
    filt = raw.get("device-filter")
    if filt is not None:
        items = filt if isinstance(filt, list) else [filt]
        filt = tuple(_pci_id(path, f"{key}.device-filter", f) for f in items)
    enabled = raw.get("mig-enabled")
    if not isinstance(enabled, bool):
        raise _fail(path, f"{key}.mig-enabled", f"expected true or false, got {enabled!r}")
    wanted = raw.get("mig-devices") or {}
    if not isinstance(wanted, dict):
        raise _fail(path, f"{key}.mig-devices", "expected a mapping of profile name to count")
    for name, n in wanted.items():
        if not isinstance(name, str) or not PROFILE_NAME.match(name):
            raise _fail(path, f"{key}.mig-devices.{name}", "not a MIG profile name such as 1g.10gb")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _fail(path, f"{key}.mig-devices.{name}",
                        f"count must be a whole number >= 0, got {n!r}")
    if wanted and not enabled:
        raise _fail(path, f"{key}.mig-devices", "MIG devices listed with mig-enabled: false")
    return LayoutEntry(devices=dev, device_filter=filt, mig_enabled=enabled,
                       mig_devices=dict(wanted))


def load_layouts(path: Path | str) -> dict[str, Layout]:
    """Every layout of one mig-parted config file, by name."""
    path = Path(path)
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LayoutError(f"{path}: cannot read MIG layout file: {exc}") from exc
    if not isinstance(raw, dict):
        raise LayoutError(f"{path}: expected a mig-parted config (version: v1, mig-configs: ...)")
    if raw.get("version") != "v1":
        raise _fail(path, "version",
                    f"expected v1 (mig-parted's format), got {raw.get('version')!r}")
    configs = raw.get("mig-configs")
    if not isinstance(configs, dict) or not configs:
        raise _fail(path, "mig-configs", "expected a mapping of layout names to entry lists")
    layouts = {}
    for name, entries in configs.items():
        if not isinstance(entries, list) or not entries:
            raise _fail(path, f"mig-configs.{name}", "expected a non-empty list of entries")
        layouts[str(name)] = Layout(str(name), path, tuple(
            _entry(path, f"mig-configs.{name}[{i}]", e) for i, e in enumerate(entries)))
    return layouts


def _split_spec(spec: str) -> tuple[str | None, str]:
    """'FILE:NAME' -> (FILE, NAME); 'NAME' -> (None, NAME)."""
    if ":" in spec:
        file, name = spec.rsplit(":", 1)
        if file and name:
            return file, name
    return None, spec


def resolve_layout(spec: str, search_dir: Path | str | None = None) -> Layout:
    """A layout from 'FILE:NAME' or from 'NAME' looked up in the files of `search_dir`."""
    search = Path(search_dir or default_layout_dir())
    file, name = _split_spec(spec.strip())
    if file is not None:
        path = Path(file)
        if not path.is_absolute() and not path.exists() and (search / path).exists():
            path = search / path
        if not path.exists():
            raise LayoutError(f"layout '{spec}': file {path} does not exist (use FILE:NAME with "
                              f"a mig-parted config, or a layout name from {search})")
        files = [path]
    else:
        files = sorted([*search.glob("*.yaml"), *search.glob("*.yml")]) if search.is_dir() else []
    known: dict[str, Layout] = {}
    for f in files:
        for key, layout in load_layouts(f).items():
            known.setdefault(key, layout)
    if name in known:
        return known[name]
    where = ", ".join(str(f) for f in files) or f"{search} (no layout files)"
    raise LayoutError(f"unknown MIG layout '{name}'{did_you_mean(name, known)} in {where}; "
                      f"known layouts: {', '.join(sorted(known)) or 'none'}")


@functools.lru_cache(maxsize=64)
def cached_layout(spec: str) -> Layout:
    """resolve_layout(spec) read once per process (a layout suite asks for it per case)."""
    return resolve_layout(spec)


def layout_on_gpu(layout: Layout, index: int, pci_device_id: int,
                  label: str) -> dict[str, int] | str:
    """The instances `layout` wants on one GPU, or the sentence saying it has none there."""
    wanted = layout.for_gpu(index, pci_device_id)
    if wanted:
        return wanted
    return (f"layout '{layout.name}' ({layout.source}) has no MIG devices for GPU {index} "
            f"({label}, PCI device id 0x{pci_device_id:08X}): add an entry with "
            f"mig-enabled: true and a device-filter for it")
