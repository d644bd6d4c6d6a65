"""File access that a hostile or unlucky file system cannot turn against the run.

Rules:
- Appends never follow a symlink (O_NOFOLLOW) and only ever extend a regular file.
- Files a workload wrote are read only if they are regular files (never a FIFO, a device or
  /dev/zero behind a symlink), only up to a size cap, and never block (O_NONBLOCK).
- Every refusal is an UnsafeFile (a MigError) whose one line names the path and the reason.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pytest_mig.errors import MigError

# A LoadGen summary is a few KiB, a detail log some MiB; a results.json of a big run some MiB.
MAX_READ_BYTES = 64 << 20


class UnsafeFile(MigError):
    """A file pytest-mig refuses to read or write (symlink, FIFO, device, too large)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, cap: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most `cap` bytes; UnsafeFile otherwise, OSError
    (FileNotFoundError, PermissionError) when it cannot be opened at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without writer, a socket
            raise UnsafeFile(f"{path}: refused to read it: not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path}: refused to read it: it is {_kind(st.st_mode)}, "
                             "not a regular file")
        if st.st_size > cap:
            raise UnsafeFile(f"{path}: refused to read it: {st.st_size} bytes, more than the "
                             f"{cap >> 20} MiB cap")
        chunks, total = [], 0
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            total += len(data)
            if total > cap:  # grew while we read
                raise UnsafeFile(f"{path}: refused to read it: more than the {cap >> 20} MiB cap")
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, cap: int = MAX_READ_BYTES) -> str:
    """read_bytes decoded as UTF-8, undecodable bytes replaced (never an exception)."""
    return read_bytes(path, cap).decode("utf-8", "replace")


def open_append(path: Path) -> int:
    """An O_APPEND descriptor on a regular file, created if missing; never through a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path}: refused to append: it is a symlink; pytest-mig "
                             "appends only to plain files (remove the link)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{path}: refused to append: it is {_kind(st.st_mode)}, not a "
                         "regular file")
    return fd


def is_regular(path: Path) -> bool:
    """A regular file itself (not a symlink to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
