"""Run identity: a unique run id, a run folder made exclusively, and the run's secret key.

Rules:
- A run id is `<date>-<time>-<random hex>`: two pytests started in the same second (pid 2 in
  two containers sharing a reports folder) never get the same id.
- A run folder is made with one exclusive mkdir: an existing folder or a planted symlink of
  the same name is never reused; another id is drawn instead.
- Beside the folder's files lies `run.key` (mode 0600, created exclusively): a random key that
  every workload of the run carries in its environment, and the pid and start time of the
  pytest that owns the run. The reaper kills a process only when it carries the key of a run
  folder of *this* reports root whose owner is provably gone (see process.py).
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "run.key"
_ATTEMPTS = 20


@dataclass(frozen=True)
class RunKey:
    """What `run.key` holds: the secret and the owning pytest (pid plus its start time)."""

    key: str
    owner_pid: int
    owner_start: int | None  # clock ticks since boot (/proc/<pid>/stat field 22)


def new_run_id() -> str:
    suffix = secrets.token_hex(4)
    while suffix.isdigit():  # never readable as a pid (older versions parsed one from it)
        suffix = secrets.token_hex(4)
    return time.strftime("%Y%m%d-%H%M%S") + "-" + suffix


def new_key() -> str:
    return secrets.token_hex(16)


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def make_run_dir(root: Path, run_id: str, key: str) -> tuple[str, Path]:
    """Create `root/<run_id>` exclusively (a new id if that name exists in any form) and its
    run.key; returns (run id used, folder). OSError from the filesystem propagates."""
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(_ATTEMPTS):
        # A retry draws a new id and keeps any tail (e.g. '-shard-1-of-4').
        tail = run_id.split("-", 3)[3] if run_id.count("-") >= 3 else ""
        rid = run_id if attempt == 0 else new_run_id() + (f"-{tail}" if tail else "")
        path = root / rid
        try:
            os.mkdir(path, 0o755)  # never follows a symlink named `path`: EEXIST instead
        except FileExistsError:
            continue
        write_key(path, RunKey(key, os.getpid(), start_ticks(os.getpid())))
        return rid, path
    raise FileExistsError(f"{root}: {_ATTEMPTS} run folder names in a row already exist")


def write_key(run_dir: Path, rk: RunKey) -> None:
    fd = os.open(run_dir / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"key": rk.key, "owner_pid": rk.owner_pid, "owner_start": rk.owner_start}, fh)


def read_key(run_dir: Path) -> RunKey | None:
    """run.key of a real (non-symlink) run folder, written by us; None otherwise."""
    try:
        if not stat.S_ISDIR(os.lstat(run_dir).st_mode):
            return None
        fd = os.open(run_dir / KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > 4096:
            return None
        data = json.loads(os.read(fd, 4096))
        start = data.get("owner_start")
        return RunKey(str(data["key"]), int(data["owner_pid"]),
                      int(start) if start is not None else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    finally:
        os.close(fd)


def is_real_dir(path: Path) -> bool:
    """A directory itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
