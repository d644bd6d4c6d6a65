"""Which MIG instances a pytest-mig run created: a locked, atomically replaced JSON file.

A record names the GPU (UUID), the GPU/compute instance ids, profile and placement, and
the owner (run id, pid with its start time, boot id), so a later run can tell a crashed
run's leftovers (owner gone, or the machine rebooted since) from a live run's instances.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pytest_mig.errors import GpuError
from pytest_mig.io import write_atomic

STORE_FORMAT = "pytest-mig MIG ownership v1"
STORE_NAME = "mig-ownership.json"
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id: MIG instances never survive a reboot, so a record from another boot
    describes instances that are gone (their ids may now belong to someone else's)."""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    """The run that creates instances: its id and the process whose life bounds it."""

    run_id: str
    pid: int
    pid_start: int | None
    boot_id: str

    @classmethod
    def current(cls, run_id: str, pid: int | None = None) -> Owner:
        pid = os.getpid() if pid is None else int(pid)
        return cls(run_id=run_id, pid=pid, pid_start=process_start(pid), boot_id=boot_id())


@dataclass(frozen=True)
class OwnedInstance:
    """One GPU instance, with its compute instances, that a run created."""

    gpu_uuid: str
    gpu_index: int
    gi_id: int
    profile: str
    start: int  # memory-slice placement
    size: int
    ci_ids: tuple[int, ...]
    mig_uuids: tuple[str, ...]
    run_id: str
    pid: int
    pid_start: int | None
    boot_id: str
    created_at: str

    @classmethod
    def new(cls, owner: Owner, gpu_uuid: str, gpu_index: int, gi_id: int, profile: str,
            start: int, size: int) -> OwnedInstance:
        return cls(gpu_uuid=gpu_uuid, gpu_index=gpu_index, gi_id=gi_id, profile=profile,
                   start=start, size=size, ci_ids=(), mig_uuids=(),
                   run_id=owner.run_id, pid=owner.pid, pid_start=owner.pid_start,
                   boot_id=owner.boot_id, created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def key(self) -> tuple[str, int]:
        return self.gpu_uuid, self.gi_id

    def describe(self) -> str:
        return (f"GPU instance {self.gi_id} ({self.profile} at memory slice {self.start}) on GPU "
                f"{self.gpu_index} ({self.gpu_uuid})")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ci_ids"], d["mig_uuids"] = list(self.ci_ids), list(self.mig_uuids)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OwnedInstance:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(d)
        if missing:
            raise ValueError(f"record lacks {', '.join(sorted(missing))}")
        values = {k: d[k] for k in names}
        values["ci_ids"] = tuple(int(c) for c in d["ci_ids"])
        values["mig_uuids"] = tuple(str(u) for u in d["mig_uuids"])
        return cls(**values)


def owner_alive(record: OwnedInstance) -> bool:
    """True while the record's owning process (same pid, same start time) still runs."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if record.pid_start is None:
        return True
    return process_start(record.pid) == record.pid_start


def stale_reason(record: OwnedInstance, current_boot: str | None = None) -> str | None:
    """Why a record is a crashed run's leftover, or None when its owner is still running."""
    current_boot = current_boot or boot_id()
    if record.boot_id != current_boot:
        return f"the machine rebooted since run {record.run_id} recorded it"
    if not owner_alive(record):
        return f"run {record.run_id} (pid {record.pid}) ended without removing it"
    return None


class OwnershipStore:
    """The ownership records at `path`, read and replaced under an exclusive flock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[OwnedInstance]]:
        """The records, locked; changes to the yielded list are written back atomically."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                records = self._read()
                before = list(records)
                yield records
                if records != before:
                    self._write(records)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def records(self) -> list[OwnedInstance]:
        with self.edit() as records:
            return list(records)

    def put(self, record: OwnedInstance) -> None:
        """Add `record`, replacing one for the same GPU instance."""
        with self.edit() as records:
            records[:] = [r for r in records if r.key != record.key] + [record]

    def remove(self, record: OwnedInstance) -> None:
        with self.edit() as records:
            records[:] = [r for r in records if r.key != record.key]

    def _read(self) -> list[OwnedInstance]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise GpuError(f"MIG ownership file {self.path} is unreadable ({exc}); check the "
                           "MIG instances by hand (nvidia-smi mig -lgi), then delete the "
                           "file") from None
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            raise GpuError(f"{self.path} is not a pytest-mig MIG ownership file (no 'format: "
                           f"{STORE_FORMAT}'); move it away")
        try:
            return [OwnedInstance.from_json(d) for d in data.get("instances") or []]
        except (TypeError, ValueError) as exc:
            raise GpuError(f"MIG ownership file {self.path} has a bad record ({exc}); check the "
                           "MIG instances by hand (nvidia-smi mig -lgi), then delete the file") \
                from None

    def _write(self, records: list[OwnedInstance]) -> None:
        # Owner-only (it names instances this user may destroy); rewritten under the flock of
        # edit(), often, so no fsync.
        data = {"format": STORE_FORMAT, "instances": [r.to_json() for r in records]}
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n",
                     mode=0o600, fsync=False)


def store_path(simulated_state: str | Path | None = None) -> Path:
    """Beside the simulator's state for a simulated GPU, else in the per-user state dir."""
    if simulated_state:
        return Path(simulated_state).parent / STORE_NAME
    # Lazy: collection loads this module, and leases stays unloaded then (test_startup).
    from pytest_mig.gpu.leases import state_dir
    return state_dir() / STORE_NAME
