"""The simulated GPU's state file: one JSON document shared by every process of a run.

Every access holds an exclusive `flock` on a sidecar lock file and re-reads the file;
every change is written to a temporary file and moved over the old one (`os.replace`),
so a reader sees either the old state or the new one, never half of a write.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

from pytest_mig.errors import GpuError
from pytest_mig.io import write_atomic

STATE_FORMAT = "pytest-mig simulated NVML state v1"
# What the simulator reports as driver and NVML version: those of the real H100 capture.
SIM_DRIVER_VERSION = "580.159.04"
SIM_NVML_VERSION = "13.580.159.04"

State = dict[str, Any]


class StateFile:
    """Locked, atomically replaced JSON state at `path` (lock: `<path>.lock`)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.lock_path, "a+")
        except OSError as exc:
            raise self._cannot_write(self.lock_path, exc) from None
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> State:
        """The current state; GpuError naming the file when it is missing or not ours."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GpuError(f"simulated GPU state {self.path} is gone; it is created when the "
                           "simulated backend opens (rerun, or pass a fresh state path)") from None
        except (OSError, ValueError) as exc:
            raise GpuError(f"simulated GPU state {self.path} is unreadable ({exc}); delete it "
                           "and the simulator starts from a fresh GPU") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise GpuError(f"{self.path} is not a pytest-mig simulator state (no "
                           f"'format: {STATE_FORMAT}'); delete it or choose another path")
        return data

    def write(self, state: State) -> None:
        """Replace the file atomically (callers hold `locked()`); no fsync: it changes many
        times a second and lives only as long as the run."""
        try:
            write_atomic(self.path, json.dumps(state, indent=1, sort_keys=True) + "\n",
                         fsync=False)
        except OSError as exc:  # disk full, no inodes, read-only: one line, not a traceback
            raise self._cannot_write(self.path, exc) from None

    @staticmethod
    def _cannot_write(path: Path, exc: OSError) -> GpuError:
        try:
            st = os.statvfs(path.parent)
            free = f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB and {st.f_favail} inodes free there"
        except OSError:
            free = "free space unknown"
        return GpuError(f"cannot write the simulated GPU's state {path}: "
                        f"{exc.strerror or exc} ({free}); free space there or point "
                        "--mig-reports at another file system")


def stable_uuid(prefix: str, seed: int, *parts: object) -> str:
    """'GPU-…'/'MIG-…' with a version-4-shaped UUID derived from seed and parts."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()[:16]
    return f"{prefix}-{uuid.UUID(bytes=digest, version=4)}"


def new_state(model: str, gpu_count: int, mig_enabled: bool, seed: int, gpu_dir: Path,
              caller: str = "root") -> State:
    """A fresh state with `gpu_count` GPUs of `model` and no MIG instances."""
    gpus = [{
        "index": i,
        "model": model,
        "uuid": stable_uuid("GPU", seed, "gpu", i),
        "pci_bus_id": f"00000000:{0x07 + 0x10 * i:02X}:00.0",
        "mig_current": bool(mig_enabled),
        "mig_pending": bool(mig_enabled),
        "uuid_serial": 0,
        "gi_serial": 0,  # history_ids: where the rotating GPU-instance id counter stands
        "gpu_instances": [],
        "processes": [],
    } for i in range(gpu_count)]
    return {
        "format": STATE_FORMAT,
        "simulated": True,
        "driver_version": SIM_DRIVER_VERSION,
        "nvml_version": SIM_NVML_VERSION,
        "seed": seed,
        "gpu_dir": str(gpu_dir),
        "caller": caller,  # root | mig-config | user (sim/base.py)
        "faults": {},
        "fail_next": {},
        "missing_functions": [],
        "next_pid": 4_000_000,
        "gpus": gpus,
    }
