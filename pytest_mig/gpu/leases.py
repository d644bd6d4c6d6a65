"""Cross-process leases of whole GPUs, so pytest-xdist workers never share a MIG instance.

A lease is an exclusive `flock` on a per-GPU lock file: the kernel drops it when the holder
dies, so a killed worker can never leave a GPU leased.
"""
from __future__ import annotations

import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

from pytest_mig.errors import ConfigError, LeaseTimeout


def state_dir() -> Path:
    """Per-user directory (0700) for locks and state shared by runs on this machine.

    Under a shared /tmp anyone could create it first: it must be a real directory owned by
    us, never a symlink, or our locks and MIG ownership records could be read or replaced.
    """
    base = Path(os.environ.get("PYTEST_MIG_STATE_DIR")
                or Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"pytest-mig-{os.getuid()}")
    fix = ("remove it (or set PYTEST_MIG_STATE_DIR to a directory of your own); pytest-mig "
           "creates it with mode 0700")
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(base)
    except OSError as exc:
        raise ConfigError(f"pytest-mig state directory {base}: {exc.strerror}; {fix}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"pytest-mig state directory {base} is a symlink or not a directory; "
                          f"{fix}")
    if st.st_uid != os.getuid():
        raise ConfigError(f"pytest-mig state directory {base} belongs to uid {st.st_uid}, not to "
                          f"you (uid {os.getuid()}); {fix}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


@dataclass
class GpuLease:
    """An exclusive hold on one GPU; release() or process death ends it."""

    gpu_uuid: str
    path: Path
    _fh: IO[str] | None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None


def _try_lock(path: Path) -> IO[str] | None:
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid={os.getpid()}\n")
    fh.flush()
    return fh


def acquire(gpu_uuids: Sequence[str], lock_dir: Path, timeout_s: float,
            prefer: Callable[[str], bool] | None = None, poll_s: float = 0.1) -> GpuLease:
    """Lease the first free GPU (those passing `prefer` first); wait up to `timeout_s`."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    order = sorted(gpu_uuids, key=lambda u: 0 if prefer is None or prefer(u) else 1)
    deadline = time.monotonic() + timeout_s
    while True:
        for uuid in order:
            path = lock_dir / f"gpu-{uuid}.lock"
            fh = _try_lock(path)
            if fh is not None:
                return GpuLease(uuid, path, fh)
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"no GPU free after {timeout_s:g} s: all {len(order)} GPU(s) are leased by other "
                f"pytest-mig workers or runs (locks in {lock_dir}). Use fewer xdist workers "
                f"(-n {max(1, len(order))}) or raise --mig-lease-timeout.")
        time.sleep(poll_s)
